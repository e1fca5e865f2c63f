"""The part of TwiML the platform understands, so Twilio code can drive calls unchanged.

Supported: <Response> holding <Connect><Stream url="wss://…"><Parameter name="…" value="…"/></Stream>
</Connect>, <Pause length="N"/> and <Hangup/>. Anything else is refused with a message naming the
verb, never silently ignored.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from xml.etree import ElementTree

from core import egress

from . import twilio_values

SUPPORTED = "<Connect><Stream>, <Pause> and <Hangup>"
MAX_TWIML_BYTES = 64 * 1024
MAX_STREAM_URL_CHARS = 500
MAX_PAUSE_SECONDS = 3600
FETCH_TIMEOUT_S = 5.0


class TwimlError(ValueError):
    pass


@dataclass
class CallInstructions:
    """What to do once the call is answered: wait, then stream to an agent, or hang up."""

    pause_seconds: int = 0
    stream_url: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    hangup: bool = False


def _stream(connect: ElementTree.Element, instructions: CallInstructions) -> None:
    children = list(connect)
    if len(children) != 1 or children[0].tag != "Stream":
        raise TwimlError("<Connect> must hold exactly one <Stream>")
    stream = children[0]
    url = stream.get("url", "")
    if len(url) > MAX_STREAM_URL_CHARS:
        raise TwimlError(f"<Stream url> may hold at most {MAX_STREAM_URL_CHARS} characters")
    if urllib.parse.urlsplit(url).scheme not in ("ws", "wss"):
        raise TwimlError(f"<Stream url> must be a ws:// or wss:// URL, got {url[:100]!r}")
    for parameter in stream:
        if parameter.tag != "Parameter" or not parameter.get("name"):
            raise TwimlError(f"<Stream> may only hold <Parameter name=… value=…>, not <{parameter.tag}>")
        instructions.parameters[parameter.get("name")] = parameter.get("value", "")
    instructions.stream_url = url


def parse(twiml: str) -> CallInstructions:
    if not isinstance(twiml, str):
        raise TwimlError("Twiml must be a string holding a <Response> document")
    if len(twiml) > MAX_TWIML_BYTES:
        raise TwimlError(f"TwiML is larger than {MAX_TWIML_BYTES} characters")
    try:
        root = ElementTree.fromstring(twiml.strip())
    except ElementTree.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML must start with <Response>, not <{root.tag}>")
    instructions = CallInstructions()
    for verb in root:
        if instructions.stream_url or instructions.hangup:
            raise TwimlError(f"<{verb.tag}> after <Connect> or <Hangup> is never reached")
        if verb.tag == "Pause":
            try:
                length = int(verb.get("length", "1"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_PAUSE_SECONDS:
                raise TwimlError(f"<Pause length> must be a whole number of seconds from 0 to {MAX_PAUSE_SECONDS}")
            instructions.pause_seconds += length
        elif verb.tag == "Hangup":
            instructions.hangup = True
        elif verb.tag == "Connect":
            _stream(verb, instructions)
        else:
            raise TwimlError(f"the TwiML verb <{verb.tag}> is not supported; supported are {SUPPORTED}")
    return instructions


def fetch(url: str, params: dict[str, str], allow, method: str = "POST", auth_token: str = "") -> CallInstructions:
    """Fetch TwiML from the tenant's `Url` through the outbound guard (``allow``: its allow-list),
    signed with the account's auth token as Twilio signs (X-Twilio-Signature): a refused target is
    named by the rule that refused it, and what an unreachable target said is never passed back."""
    if not isinstance(url, str):
        raise TwimlError("Url must be a string")
    data = urllib.parse.urlencode(params).encode()
    if str(method).upper() == "GET":
        target, body = f"{url}{'&' if '?' in url else '?'}{data.decode()}", None
        headers: dict[str, str] = {}
        signed: tuple[str, dict[str, str]] = (target, {})
    else:
        target, body = url, data
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        signed = (url, params)
    if auth_token:
        headers["X-Twilio-Signature"] = twilio_values.signature(auth_token, *signed)
    try:
        response = egress.request(target, method="GET" if body is None else "POST", body=body, headers=headers,
                                  allow=allow, timeout=FETCH_TIMEOUT_S, max_bytes=MAX_TWIML_BYTES)
    except egress.EgressRefused as exc:
        raise TwimlError(f"Url refused: {exc}") from None
    except egress.EgressFailed as exc:
        raise TwimlError(f"could not fetch TwiML from Url: {exc}") from None
    if not 200 <= response.status < 300:
        raise TwimlError(f"could not fetch TwiML from Url: it answered HTTP {response.status}")
    return parse(response.body.decode("utf-8", errors="replace"))
