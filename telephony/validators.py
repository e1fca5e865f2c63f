"""Input validation for telephony settings. Each validator returns the normalized value or raises
ValueError with a message naming what is wrong (the Django layer wraps these into field errors).
"""
from __future__ import annotations

import ipaddress
import re

import phonenumbers

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
SIP_TRANSPORTS = ("udp", "tcp", "tls", "sctp", "ws", "wss")
# RFC 3261 "user" characters: unreserved / escaped / user-unreserved.
_SIP_USER = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$")


def validate_e164(value: str, strict: bool = True) -> str:
    """Normalize a phone number to E.164 ('+14155550123').

    Accepts common punctuation ('+1 (415) 555-0123'); the number must start with '+' and a country
    code. `strict` checks it against the numbering plan of its country (libphonenumber
    `is_valid_number`); with strict=False only the length has to be possible.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("phone number is empty")
    text = value.strip()
    if not text.startswith("+"):
        raise ValueError(f"phone number {value!r} must start with '+' and the country code (E.164)")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        reason = {
            phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has an unknown country code",
            phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
            phonenumbers.NumberParseException.TOO_LONG: "is too long",
        }.get(exc.error_type, "cannot be parsed as a phone number")
        raise ValueError(f"phone number {value!r} {reason}") from None
    if number.extension:
        raise ValueError(f"phone number {value!r} has an extension; E.164 numbers cannot carry one")
    region = phonenumbers.region_code_for_number(number)
    if region in (None, "ZZ", "001"):
        region = f"country code +{number.country_code}"
    if not phonenumbers.is_possible_number(number):
        reason = phonenumbers.is_possible_number_with_reason(number)
        what = {
            phonenumbers.ValidationResult.TOO_SHORT: "is too short",
            phonenumbers.ValidationResult.TOO_LONG: "is too long",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
            phonenumbers.ValidationResult.INVALID_LENGTH: "has a length not used",
        }.get(reason, "is not a possible number")
        raise ValueError(f"phone number {value!r} {what} for {region}")
    if strict and not phonenumbers.is_valid_number(number):
        raise ValueError(f"phone number {value!r} is not a valid number in the numbering plan of {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_host(value: str) -> str:
    """A DNS hostname (RFC 1123) or an IPv4/IPv6 address ('[::1]' allowed); returned lowercased,
    IPv6 without brackets."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("host is empty")
    text = value.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        if text.startswith("["):
            raise ValueError(f"host {value!r} is bracketed but not an IPv6 address") from None
    host = text.rstrip(".").lower()  # a trailing dot (fully qualified) is legal
    if len(host) > 253:
        raise ValueError(f"host {value!r} is longer than 253 characters")
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"host {value!r} looks like an IPv4 address but is not a valid one")
    for label in host.split("."):
        if not label:
            raise ValueError(f"host {value!r} has an empty label (two dots in a row or a leading dot)")
        if not _LABEL.match(label):
            raise ValueError(
                f"host {value!r} has an invalid label {label!r}: use letters, digits and inner hyphens, "
                "at most 63 characters"
            )
    return host


def validate_port(value: int | str) -> int:
    """A TCP/UDP port number 1..65535 (a string of digits is accepted)."""
    if isinstance(value, bool):
        raise ValueError(f"port must be a number, not {value!r}")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"port {value!r} is not a number")
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValueError(f"port must be an integer, not {type(value).__name__}")
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} is out of range 1-65535")
    return value


def validate_sip_uri(value: str) -> str:
    """A SIP or SIPS URI: 'sip:[user[:password]@]host[:port][;params][?headers]'.

    Checks the scheme, the user part's characters, the host, the port and the transport parameter.
    Returns the URI stripped of surrounding whitespace and angle brackets.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("SIP URI is empty")
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        raise ValueError(f"SIP URI {value!r} must start with 'sip:' or 'sips:'")
    if not rest:
        raise ValueError(f"SIP URI {value!r} has nothing after the scheme")
    rest, _, _headers = rest.partition("?")
    # The user part may itself contain ';' (user-params), so split user from host on the last '@'.
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user = userinfo.split(":", 1)[0]
        if not user:
            raise ValueError(f"SIP URI {value!r} has an empty user part before '@'")
        if not _SIP_USER.match(user):
            raise ValueError(f"SIP URI {value!r} has invalid characters in the user part {user!r}")
    else:
        hostpart = rest
    hostport, _, params = hostpart.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"SIP URI {value!r} has an unclosed '[' in the host")
        host, port = hostport[: end + 1], hostport[end + 1:]
        if port and not port.startswith(":"):
            raise ValueError(f"SIP URI {value!r} has text after the IPv6 host: {port!r}")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
        if ":" in port:
            raise ValueError(f"SIP URI {value!r}: an IPv6 host must be written in brackets")
    try:
        validate_host(host)
    except ValueError as exc:
        raise ValueError(f"SIP URI {value!r}: {exc}") from None
    if port or hostport.endswith(":"):
        try:
            validate_port(port)
        except ValueError as exc:
            raise ValueError(f"SIP URI {value!r}: {exc}") from None
    for param in filter(None, params.split(";")):
        name, _, pvalue = param.partition("=")
        if name.lower() == "transport" and pvalue.lower() not in SIP_TRANSPORTS:
            raise ValueError(f"SIP URI {value!r}: transport {pvalue!r} is not one of {', '.join(SIP_TRANSPORTS)}")
    return text
