"""CSV uploads of the browser UI: the first check of a file, where it waits between the wizard's steps,
its preview, and the column mapping a person chose.

The wizard keeps an upload in the cache (Redis, shared by every web process) for a couple of hours
between "upload" and "import": the preview and the mapping need the file, the import needs it whole.
The mapping is applied by rewriting only the header row (the chosen columns renamed to the names
campaigns.imports recognises), so the import itself, its checks and its line-by-line report are
campaigns.services.contact_list_import, unchanged; line numbers stay those of the file uploaded.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import uuid

from django.core.cache import cache

from campaigns import imports

ACCEPTED = "a .csv file (comma-separated, UTF-8) with a header row"
CACHE_TTL_S = 2 * 3600
PREVIEW_ROWS = 10
ALIASES = set(imports.PHONE_COLUMNS) | set(imports.NAME_COLUMNS) | set(imports.TIME_ZONE_COLUMNS)


def limit_text() -> str:
    limit = imports.max_upload_bytes()
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} bytes"


def refusal(upload) -> str | None:
    """Why an upload is refused (too big, not a CSV), saying what is accepted; None if it looks fine."""
    limit = imports.max_upload_bytes()
    if upload.size > limit:
        return f"This file is {upload.size / (1024 * 1024):.1f} MB: files up to {limit_text()} are accepted."
    name = (upload.name or "").lower()
    head = upload.read(4096)
    upload.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0") or name.endswith((".xlsx", ".xls", ".ods")):
        return f"This looks like a spreadsheet workbook. Save it as CSV UTF-8 and upload that: {ACCEPTED} is accepted."
    if not name.endswith((".csv", ".txt")):
        return f"Only CSV files are accepted: {ACCEPTED}, up to {limit_text()}."
    if upload.size == 0:
        return f"This file is empty: {ACCEPTED} is accepted."
    if b"\x00" in head:
        return f"This is not a text file: {ACCEPTED} is accepted."
    return None


# --- waiting between steps -----------------------------------------------------------------------


def _key(schema: str, token: str) -> str:
    return f"ui:upload:{schema}:{token}"


def stash(schema: str, data: bytes) -> str:
    token = uuid.uuid4().hex
    cache.set(_key(schema, token), data, CACHE_TTL_S)
    return token


def fetch(schema: str, token: str | None) -> bytes | None:
    return cache.get(_key(schema, token)) if token else None


def drop(schema: str, token: str | None) -> None:
    if token:
        cache.delete(_key(schema, token))


# --- preview and mapping -------------------------------------------------------------------------


class UnreadableFile(ValueError):
    """The file cannot be previewed; the message says why, for the person who uploaded it."""


def _text(data: bytes, limit: int = 256 * 1024) -> str:
    """The first `limit` bytes as text (a character cut at the end is left out)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        return decoder.decode(data[:limit], final=len(data) <= limit)
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"This file is not UTF-8 (invalid byte at position {exc.start}). Save it as CSV UTF-8 and upload "
            f"again: {ACCEPTED} is accepted."
        ) from None


def preview(data: bytes, rows: int = PREVIEW_ROWS) -> tuple[list[str], list[list[str]]]:
    """(header, first rows) of the file, blank lines skipped."""
    reader = csv.reader(io.StringIO(_text(data)))
    found: list[list[str]] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            found.append(row)
            if len(found) > rows:
                break
    except csv.Error as exc:
        raise UnreadableFile(f"This file is not a readable CSV: {exc}.") from None
    if not found:
        raise UnreadableFile(f"This file has no header row: {ACCEPTED} is accepted.")
    return [h.strip() for h in found[0]], found[1:]


def column_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def guess_mapping(headers: list[str]) -> dict:
    keys = [column_key(h) for h in headers]

    def find(names):
        return next((keys.index(n) for n in names if n in keys), None)

    return {"phone": find(imports.PHONE_COLUMNS), "name": find(imports.NAME_COLUMNS),
            "time_zone": find(imports.TIME_ZONE_COLUMNS)}


def mapped_header(headers: list[str], phone: int, name: int | None, time_zone: int | None) -> list[str]:
    """The header the importer reads: chosen columns named phone/name/time_zone; any other column whose
    name the importer would take for one of those is renamed so that it stays a variable."""
    out = []
    for i, header in enumerate(headers):
        if i == phone:
            out.append("phone")
        elif i == name:
            out.append("name")
        elif i == time_zone:
            out.append("time_zone")
        elif column_key(header) in ALIASES:
            out.append(f"{header} (column {i + 1})")
        else:
            out.append(header)
    return out


def with_header(data: bytes, header: list[str]) -> bytes:
    """The file with its header record replaced (leading blank lines and every other byte kept)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.splitlines(keepends=True)
    i = 0
    prefix = b""
    while i < len(lines) and not lines[i].strip():
        prefix += lines[i]
        i += 1
    record = b""
    while i < len(lines):
        record += lines[i]
        i += 1
        if record.count(b'"') % 2 == 0:
            break
    ending = "\r\n" if record.endswith(b"\r\n") else "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerow(header)
    return prefix + buffer.getvalue().encode() + b"".join(lines[i:])
