"""CSV contact import: a streaming parse, phones normalised to E.164, bulk inserts in batches.

The whole file is checked for its size and encoding before any row is read, so a file that is too
big or not UTF-8 imports nothing. Rows are then parsed one at a time (the file is never held in
memory as text), good rows are COPYed in batches into a temporary table and moved into the list with
INSERT … SELECT … ON CONFLICT DO NOTHING, all in one transaction; bad rows are reported with their
line number, why, and the offending value.

Columns (header names are matched case-insensitively, spaces/dashes as underscores):
  phone (also phone_number, number, e164, to): required
  name (also full_name): optional
  time_zone (also timezone, tz, "time zone"): optional; derived from the number when empty
Every other column is kept per contact in `variables` under its header as written.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import phonenumbers
from django.conf import settings
from django.db import connection, transaction
from phonenumbers import timezone as phone_timezone

from .models import PLATFORM_PARAMETERS, Contact, ContactList, DoNotCall, known_time_zones

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_REPORTED_ERRORS = 1000
BATCH_SIZE = 5000
CHUNK = 1024 * 1024

PHONE_COLUMNS = ("phone", "phone_number", "number", "e164", "to")
NAME_COLUMNS = ("name", "full_name")
TIME_ZONE_COLUMNS = ("time_zone", "timezone", "tz")

_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has no valid country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "is not a phone number (no digits where expected)",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    phonenumbers.NumberParseException.TOO_LONG: "is too long",
}


class ImportRejected(ValueError):
    """The file as a whole cannot be imported (nothing was); the message names the problem."""


@dataclass
class ImportReport:
    total_rows: int = 0
    imported: int = 0
    duplicates: int = 0
    do_not_call: int = 0
    error_count: int = 0
    errors: list[dict] = field(default_factory=list)
    duplicate_rows: list[dict] = field(default_factory=list)  # at most MAX_REPORTED_ERRORS, by line
    warnings: list[str] = field(default_factory=list)  # about the file as a whole (imported anyway)

    def add_error(self, line: int, reason: str, value: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "reason": reason, "value": value[:200]})

    def add_duplicate(self, line: int, reason: str, value: str) -> None:
        self.duplicates += 1
        if len(self.duplicate_rows) < MAX_REPORTED_ERRORS:
            self.duplicate_rows.append({"line": line, "reason": reason, "value": value[:200]})

    def as_dict(self) -> dict:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "duplicate_rows": self.duplicate_rows,
            "duplicates_not_shown": self.duplicates - len(self.duplicate_rows),
            "warnings": self.warnings,
            "do_not_call": self.do_not_call,
            "errors": self.errors,
            "error_count": self.error_count,
            "errors_not_shown": self.error_count - len(self.errors),
            "total_rows": self.total_rows,
        }


def max_upload_bytes() -> int:
    return int(getattr(settings, "CONTACT_UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def normalize_phone(raw: str, region: str | None) -> tuple[str, str]:
    """(E.164, derived time zone or '') for a phone number as written; ValueError says why not."""
    try:
        number = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "cannot be parsed as a phone number")
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not raw.lstrip().startswith("+"):
            reason = "has no country code: write it with '+' or set default_region"
        raise ValueError(f"value {reason}" if exc.error_type == phonenumbers.NumberParseException.NOT_A_NUMBER
                         else f"phone number {reason}") from None
    if number.extension:
        raise ValueError("phone number has an extension, which cannot be dialed")
    if not phonenumbers.is_valid_number(number):
        region_name = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise ValueError(f"phone number is not a valid number for {region_name}")
    zones = phone_timezone.time_zones_for_number(number)
    zone = zones[0] if zones and zones[0] in known_time_zones() else ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), zone


def _check_size_and_encoding(stream: IO[bytes], size: int | None) -> None:
    limit = max_upload_bytes()
    if size is not None and size > limit:
        raise ImportRejected(f"file is too big: {size} bytes, the limit is {limit} bytes")
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = 0
    offset = 0
    while chunk := stream.read(CHUNK):
        read += len(chunk)
        if read > limit:
            raise ImportRejected(f"file is too big: more than {limit} bytes, the limit is {limit} bytes")
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            position = offset + exc.start
            raise ImportRejected(
                f"file is not UTF-8 (invalid byte 0x{chunk[exc.start]:02x} at byte {position}): "
                "save it as UTF-8 CSV and upload again"
            ) from None
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ImportRejected("file is not UTF-8 (it ends in the middle of a character): save it as UTF-8 CSV") from None
    if read == 0:
        raise ImportRejected("file is empty: expected a CSV with a header row naming a phone column")
    stream.seek(0)


def _column_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


@dataclass(frozen=True)
class _Columns:
    phone: int
    name: int | None
    time_zone: int | None
    variables: tuple[tuple[int, str], ...]
    width: int
    renamed: tuple[tuple[str, str], ...]  # (header, the variable's name): headers the platform's parameters use


def _columns(header: list[str]) -> _Columns:
    keys = [_column_key(h) for h in header]

    def find(names: tuple[str, ...]) -> int | None:
        return next((keys.index(n) for n in names if n in keys), None)

    phone = find(PHONE_COLUMNS)
    if phone is None:
        raise ImportRejected(
            f"no phone column: the header row must name one of {', '.join(PHONE_COLUMNS)} "
            f"(found: {', '.join(h for h in header if h.strip()) or 'nothing'})"
        )
    name, time_zone = find(NAME_COLUMNS), find(TIME_ZONE_COLUMNS)
    used = {phone, name, time_zone}
    variables, renamed = [], []
    for i, h in enumerate(header):
        if i in used or not h.strip():
            continue
        variable = h.strip() if h.strip() not in PLATFORM_PARAMETERS else f"{h.strip()} (column {i + 1})"
        if variable != h.strip():
            renamed.append((h.strip(), variable))
        variables.append((i, variable))
    return _Columns(phone, name, time_zone, tuple(variables), len(header), tuple(renamed))


def _rows(stream: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """(first line number of the record, fields), blank lines skipped; the header is line 1."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    previous_end = 0
    for row in reader:
        start, previous_end = previous_end + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield start, row
    text.detach()


def import_contacts(contact_list: ContactList, stream: IO[bytes], size: int | None = None,
                    default_region: str | None = None) -> ImportReport:
    """Import a CSV file (binary stream) into a contact list of the current tenant schema."""
    region = (contact_list.default_region if default_region is None else default_region).upper()
    _check_size_and_encoding(stream, size)
    rows = _rows(stream)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ImportRejected("file has no header row: expected a CSV with a phone column") from None
    except csv.Error as exc:
        raise ImportRejected(f"file is not a readable CSV: {exc}") from None
    columns = _columns(header)
    zones = known_time_zones()
    report = ImportReport()
    for header_name, variable in columns.renamed:
        report.warnings.append(f"column “{header_name}” is kept as “{variable}”: the platform sets a parameter "
                               f"named {header_name} on every call itself, which would replace the contact's value")
    seen: dict[str, int] = {}  # phone -> the line that brought it
    batch: list[tuple[int, str, str, str, dict]] = []

    with transaction.atomic(), connection.cursor() as cursor:
        staging = _Staging(cursor)
        try:
            for line, row in rows:
                report.total_rows += 1
                if len(row) != columns.width:
                    report.add_error(line, f"expected {columns.width} columns, found {len(row)}", ",".join(row))
                    continue
                raw_phone = row[columns.phone].strip()
                if not raw_phone:
                    report.add_error(line, "phone is empty", "")
                    continue
                try:
                    phone, derived_zone = normalize_phone(raw_phone, region)
                except ValueError as exc:
                    report.add_error(line, str(exc), raw_phone)
                    continue
                zone = row[columns.time_zone].strip() if columns.time_zone is not None else ""
                if zone and zone not in zones:
                    report.add_error(line, "unknown time zone: use an IANA name such as 'America/New_York'", zone)
                    continue
                name = row[columns.name].strip() if columns.name is not None else ""
                if len(name) > 200:
                    report.add_error(line, "name is longer than 200 characters", name)
                    continue
                if phone in seen:
                    report.add_duplicate(line, f"same number as line {seen[phone]}", raw_phone)
                    continue
                seen[phone] = line
                variables = {header_name: row[i] for i, header_name in columns.variables}
                batch.append((line, phone, name, zone or derived_zone, variables))
                if len(batch) >= BATCH_SIZE:
                    staging.copy(batch)
                    batch = []
        except csv.Error as exc:
            raise ImportRejected(f"file is not a readable CSV (line {report.total_rows + header_line}): {exc}") from None
        staging.copy(batch)
        staging.finish(contact_list, report)
    return report


class _Staging:
    """Good rows are COPYed into a temporary table as they are parsed, then moved into the list with
    two set-based statements: do-not-call numbers deleted from the staging table (counted), the rest
    inserted with ON CONFLICT DO NOTHING (numbers already in the list, or added by a concurrent upload
    of the same list, are duplicates: counted, and the first of them listed by line)."""

    TABLE = "pg_temp.contact_import"

    def __init__(self, cursor):
        self.cursor = cursor
        self.staged = 0
        cursor.execute(f"DROP TABLE IF EXISTS {self.TABLE}")
        cursor.execute(
            "CREATE TEMPORARY TABLE contact_import (line integer, phone text, name text, time_zone text, variables jsonb) "
            "ON COMMIT DROP"
        )

    def copy(self, batch: list[tuple[int, str, str, str, dict]]) -> None:
        if not batch:
            return
        # The psycopg cursor under Django's wrapper: COPY is the fastest way in.
        with self.cursor.cursor.copy(f"COPY {self.TABLE} (line, phone, name, time_zone, variables) FROM STDIN") as copy:
            for line, phone, name, zone, variables in batch:
                copy.write_row((line, phone, name, zone, json.dumps(variables, ensure_ascii=False)))
        self.staged += len(batch)

    def finish(self, contact_list: ContactList, report: ImportReport) -> None:
        quote = connection.ops.quote_name
        self.cursor.execute(
            f"DELETE FROM {self.TABLE} t USING {quote(DoNotCall._meta.db_table)} d WHERE d.phone = t.phone"
        )
        report.do_not_call += self.cursor.rowcount
        staged = self.staged - report.do_not_call
        self.cursor.execute(
            f"WITH added AS (INSERT INTO {quote(Contact._meta.db_table)} "
            "(contact_list_id, phone, name, time_zone, variables) "
            f"SELECT %s, phone, name, time_zone, variables FROM {self.TABLE} "
            "ON CONFLICT (contact_list_id, phone) DO NOTHING RETURNING phone) "
            f"SELECT t.line, t.phone, count(*) OVER () FROM {self.TABLE} t "
            "WHERE NOT EXISTS (SELECT 1 FROM added WHERE added.phone = t.phone) ORDER BY t.line LIMIT %s",
            [contact_list.pk, MAX_REPORTED_ERRORS],
        )
        already = self.cursor.fetchall()
        count = already[0][2] if already else 0
        report.imported += staged - count
        for line, phone, _ in already:
            report.add_duplicate(line, "already in this contact list", phone)
        report.duplicates += count - len(already)  # those past the LIMIT: counted, not listed
        report.duplicate_rows.sort(key=lambda row: row["line"])
        self.cursor.execute(f"DROP TABLE {self.TABLE}")
