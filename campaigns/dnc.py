"""Do-not-call list imports: a CSV of numbers added to the current tenant's list, bad lines reported
by line number and the good ones kept. Each number goes through services.do_not_call_add, so a number
added here takes its waiting contacts out of every campaign at once, as when added one by one."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from . import imports, services


@dataclass
class DoNotCallImportReport:
    added: int = 0
    already: int = 0  # on the list before this import
    error_count: int = 0
    errors: list[dict] = field(default_factory=list)  # {"line", "value", "reason"}, the first MAX_REPORTED_ERRORS

    def add_error(self, line: int, value: str, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < imports.MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "value": value[:100], "reason": reason})

    def as_dict(self) -> dict:
        return {"added": self.added, "already": self.already, "error_count": self.error_count, "errors": self.errors}


def do_not_call_import(data: bytes) -> DoNotCallImportReport:
    """Add every number of a UTF-8 CSV to the do-not-call list. The numbers are in the column named as
    a phone column (imports.PHONE_COLUMNS), or in the first column when the first row is no header;
    an optional `reason` column is kept with each. Raises UnicodeDecodeError for a file not in UTF-8
    (nothing is added then)."""
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    report = DoNotCallImportReport()
    header_seen = False
    phone_at, reason_at = 0, None
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        line = reader.line_num
        if not header_seen:
            header_seen = True
            keys = [imports._column_key(h) for h in row]
            named = next((keys.index(n) for n in imports.PHONE_COLUMNS if n in keys), None)
            if named is not None:
                phone_at = named
                reason_at = keys.index("reason") if "reason" in keys else None
                continue
            # no header: the first column holds numbers, this row included
        raw = row[phone_at].strip() if phone_at < len(row) else ""
        reason = row[reason_at].strip()[:255] if reason_at is not None and reason_at < len(row) else ""
        try:
            _, created = services.do_not_call_add(phone=raw, reason=reason)
        except ValidationError as exc:
            report.add_error(line, raw, "; ".join(exc.messages))
            continue
        if created:
            report.added += 1
        else:
            report.already += 1
    return report
