"""The part of TwiML the platform understands, so Twilio code can drive calls unchanged.

Supported: <Response> holding <Connect><Stream url="wss://…"><Parameter name="…" value="…"/></Stream>
</Connect>, <Pause length="N"/> and <Hangup/>. Anything else is refused with a message naming the
verb, never silently ignored.
"""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from xml.etree import ElementTree

SUPPORTED = "<Connect><Stream>, <Pause> and <Hangup>"
MAX_TWIML_BYTES = 64 * 1024


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
    if urllib.parse.urlsplit(url).scheme not in ("ws", "wss"):
        raise TwimlError(f"<Stream url> must be a ws:// or wss:// URL, got {url!r}")
    for parameter in stream:
        if parameter.tag != "Parameter" or not parameter.get("name"):
            raise TwimlError(f"<Stream> may only hold <Parameter name=… value=…>, not <{parameter.tag}>")
        instructions.parameters[parameter.get("name")] = parameter.get("value", "")
    instructions.stream_url = url


def parse(twiml: str) -> CallInstructions:
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
                instructions.pause_seconds += int(verb.get("length", "1"))
            except ValueError:
                raise TwimlError("<Pause length> must be a whole number of seconds") from None
        elif verb.tag == "Hangup":
            instructions.hangup = True
        elif verb.tag == "Connect":
            _stream(verb, instructions)
        else:
            raise TwimlError(f"the TwiML verb <{verb.tag}> is not supported; supported are {SUPPORTED}")
    return instructions


def fetch(url: str, params: dict[str, str], method: str = "POST", timeout: float = 5.0) -> CallInstructions:
    """Fetch TwiML from the tenant's `Url`, as Twilio does when the call is created."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TwimlError(f"Url must be an http(s) URL, got {url!r}")
    data = urllib.parse.urlencode(params).encode()
    if method.upper() == "GET":
        request = urllib.request.Request(f"{url}{'&' if '?' in url else '?'}{data.decode()}")
    else:
        request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_TWIML_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise TwimlError(f"could not fetch TwiML from {url}: {exc}") from None
    if len(body) > MAX_TWIML_BYTES:
        raise TwimlError(f"TwiML from {url} is larger than {MAX_TWIML_BYTES} bytes")
    return parse(body.decode("utf-8", errors="replace"))
