"""The head of a SIP message (RFC 3261 section 7): its start line and header fields, folded lines
joined, compact header names expanded. Stdlib only: the gateway's dialog records, the carrier
health pings (sip_options) and the demo carrier all read SIP through it."""
from __future__ import annotations

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding", "o": "event"}


class SipError(ValueError):
    pass


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """(head, body) of a message; a message with bare LF line ends is split at its blank line too."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = data.partition(b"\n\n")
    return head, body


def head_lines(head: bytes | str) -> list[str]:
    """The start line and the header lines (folded lines joined) of a message's head; with the
    whole message given, the lines up to the blank line. Raises SipError when it is not UTF-8."""
    if isinstance(head, bytes):
        try:
            head = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SipError("not UTF-8") from exc
    head = head.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines: list[str] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def header_fields(lines: list[str], strict: bool = False) -> list[tuple[str, str]]:
    """(lower-case long name, value) of each header line after the start line, in order. A line
    with no colon is skipped, or raises SipError when ``strict``."""
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            if strict:
                raise SipError(f"bad header line {line!r}")
            continue
        name = name.strip().lower()
        fields.append((COMPACT.get(name, name), value.strip()))
    return fields


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value (Via, Route, Record-Route), ignoring commas inside
    quotes and <...>."""
    out: list[str] = []
    cur: list[str] = []
    quote = angle = False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif ch == "<" and not quote:
            angle = True
        elif ch == ">" and not quote:
            angle = False
        if ch == "," and not quote and not angle:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out
