"""CSV lines that are safe to open in a spreadsheet: a text cell that starts with = + - @, a tab or a
carriage return would be read as a formula, so it gets a leading apostrophe (OWASP's advice). Plain
numbers, such as E.164 phone numbers (+14155550123), stay as they are."""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def safe_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class _Echo:
    def write(self, value):
        return value


class CsvLines:
    """``line(row)`` → one CSV line (str) with every cell made safe, for streamed exports."""

    def __init__(self):
        self._writer = csv.writer(_Echo())

    def line(self, row: Iterable) -> str:
        return self._writer.writerow([safe_cell(value) for value in row])
