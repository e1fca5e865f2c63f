"""TwiML as Twilio runs it: a document becomes the program of steps the call's media host runs in
order (media/twiml_player.py), so Twilio code drives calls unchanged.

Verbs: <Say> (espeak-ng), <Play> (a WAV / mu-law URL, ``loop``, or ``digits``), <Pause>, <Connect>
<Stream> (the Media Stream; nothing after it runs), <Redirect> (the next document, fetched when
reached), <Hangup>, <Reject> (first in an inbound call's document: the call is refused unanswered;
after another verb it hangs up, the call being answered by then). <Dial> (one <Number>, <Sip> or bare
number) is not a media-host step: it is kept as the document's ``dial`` (a call transfer,
telephony/calls/dial.py) and must be the document's only verb. Anything else is refused with a message
naming the verb, never silently ignored.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from xml.etree import ElementTree

from core import egress

from . import twilio_values

SUPPORTED = ("<Say>, <Play>, <Pause>, <Connect><Stream>, <Start><Stream>, <Stop><Stream>, <Redirect>, <Hangup>, "
             "<Reject> and <Dial>")
MAX_TWIML_BYTES = 64 * 1024
MAX_STREAM_URL_CHARS = 500
MAX_URL_CHARS = 2000
MAX_PAUSE_SECONDS = 3600
MAX_SAY_CHARS = 4096  # Twilio's limit for one <Say>
MAX_LOOP = 1000
FETCH_TIMEOUT_S = 5.0
DIGITS = set("0123456789*#ABCDw")
REJECT_REASONS = ("rejected", "busy")
DIAL_ATTRIBUTES = {"action", "method", "timeout", "callerId"}
# Twilio <Dial> attributes that change nothing here when given with their default value.
DIAL_DEFAULTS = {"hangupOnStar": "false", "record": "do-not-record", "answerOnBridge": "false", "ringTone": ""}


class TwimlError(ValueError):
    pass


@dataclass
class CallInstructions:
    """A document's program (media/twiml_player.py steps); the Media Stream it connects to, if any,
    is also kept on the call's record."""

    steps: list[dict] = field(default_factory=list)
    stream_url: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    dial: Dial | None = None


@dataclass
class Dial:
    """<Dial>: the person to hand the call to (an E.164 number or a SIP URI), checked by the transfer."""

    to: str
    caller_id: str = ""
    timeout: int = 30
    action: str = ""
    method: str = "POST"


def _whole(verb: ElementTree.Element, name: str, default: str, low: int, high: int) -> int:
    try:
        value = int(verb.get(name, default))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise TwimlError(f"<{verb.tag} {name}> must be a whole number from {low} to {high}")
    return value


def _url(verb: ElementTree.Element, url: str, base_url: str, schemes: tuple[str, ...]) -> str:
    url = urllib.parse.urljoin(base_url, url.strip()) if base_url else url.strip()
    if len(url) > MAX_URL_CHARS:
        raise TwimlError(f"<{verb.tag}> URL may hold at most {MAX_URL_CHARS} characters")
    if urllib.parse.urlsplit(url).scheme not in schemes:
        raise TwimlError(f"<{verb.tag}> needs a {' or '.join(f'{s}://' for s in schemes)} URL, got {url[:100]!r}")
    return url


def _stream_of(verb: ElementTree.Element) -> ElementTree.Element:
    children = list(verb)
    if len(children) != 1 or children[0].tag != "Stream":
        raise TwimlError(f"<{verb.tag}> must hold exactly one <Stream>")
    return children[0]


def _stream_target(stream: ElementTree.Element) -> tuple[str, dict[str, str]]:
    url = stream.get("url", "")
    if len(url) > MAX_STREAM_URL_CHARS:
        raise TwimlError(f"<Stream url> may hold at most {MAX_STREAM_URL_CHARS} characters")
    if urllib.parse.urlsplit(url).scheme not in ("ws", "wss"):
        raise TwimlError(f"<Stream url> must be a ws:// or wss:// URL, got {url[:100]!r}")
    parameters = {}
    for parameter in stream:
        if parameter.tag != "Parameter" or not parameter.get("name"):
            raise TwimlError(f"<Stream> may only hold <Parameter name=… value=…>, not <{parameter.tag}>")
        parameters[parameter.get("name")] = parameter.get("value", "")
    return url, parameters


def _stream(connect: ElementTree.Element, instructions: CallInstructions) -> None:
    url, instructions.parameters = _stream_target(_stream_of(connect))
    instructions.stream_url = url
    instructions.steps.append({"verb": "connect", "url": url, "params": dict(instructions.parameters)})


def _fork(start: ElementTree.Element, instructions: CallInstructions) -> None:
    stream = _stream_of(start)
    if stream.get("track", "inbound_track") != "inbound_track":
        raise TwimlError("<Start><Stream track> may only be inbound_track (the caller's audio)")
    url, parameters = _stream_target(stream)
    instructions.steps.append({"verb": "fork", "url": url, "params": parameters})


def _dial(dial: ElementTree.Element, base_url: str) -> Dial:
    for name, value in dial.attrib.items():
        if name not in DIAL_ATTRIBUTES and DIAL_DEFAULTS.get(name) != value:
            raise TwimlError(f"<Dial {name}> is not supported (see docs/twilio-compatibility.md)")
    nouns = list(dial)
    if len(nouns) > 1:
        raise TwimlError("<Dial> may hold one <Number> or <Sip> here (Twilio rings several at once; "
                         "transfers try one person)")
    if nouns:
        noun = nouns[0]
        if noun.tag not in ("Number", "Sip"):
            raise TwimlError(f"<Dial><{noun.tag}> is not supported; <Dial> may hold <Number> or <Sip>")
        if noun.attrib:
            raise TwimlError(f"<{noun.tag}> attributes are not supported ({', '.join(sorted(noun.attrib))})")
        to = (noun.text or "").strip()
        if (noun.tag == "Sip") != to.startswith(("sip:", "sips:")):
            raise TwimlError("<Sip> holds a sip: URI, <Number> a phone number")
    else:
        to = (dial.text or "").strip()
    if not to:
        raise TwimlError("<Dial> needs the number or SIP URI to dial")
    method = dial.get("method", "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError("<Dial method> must be GET or POST")
    action = _url(dial, dial.get("action"), base_url, egress.HTTP_SCHEMES) if dial.get("action") else ""
    return Dial(to=to, caller_id=dial.get("callerId", ""), timeout=_whole(dial, "timeout", "30", 5, 600),
                action=action, method=method)


def _step(verb: ElementTree.Element, instructions: CallInstructions, base_url: str) -> None:
    steps = instructions.steps
    if verb.tag == "Pause":
        steps.append({"verb": "pause", "seconds": _whole(verb, "length", "1", 0, MAX_PAUSE_SECONDS)})
    elif verb.tag == "Say":
        text = (verb.text or "").strip()
        if not text or len(text) > MAX_SAY_CHARS:
            raise TwimlError(f"<Say> must hold text of 1 to {MAX_SAY_CHARS} characters")
        language = verb.get("language", "en-US")
        steps.append({"verb": "say", "text": text, "voice": language.lower(), "loop": _whole(verb, "loop", "1", 0, MAX_LOOP)})
    elif verb.tag == "Play":
        digits = verb.get("digits")
        if digits is not None:
            if not digits or set(digits) - DIGITS or len(digits) > 32:
                raise TwimlError("<Play digits> may hold 1 to 32 of 0-9 * # A-D and w (a half-second pause)")
            steps.append({"verb": "digits", "digits": digits})
        else:
            url = _url(verb, verb.text or "", base_url, egress.HTTP_SCHEMES)
            steps.append({"verb": "play", "url": url, "loop": _whole(verb, "loop", "1", 0, MAX_LOOP)})
    elif verb.tag == "Hangup":
        steps.append({"verb": "hangup"})
    elif verb.tag == "Reject":
        reason = verb.get("reason", "rejected")
        if reason not in REJECT_REASONS:
            raise TwimlError("<Reject reason> must be rejected or busy")
        # only a document's first verb can refuse the call; after another, the call was answered
        steps.append({"verb": "reject", "reason": reason} if not steps else {"verb": "hangup"})
    elif verb.tag == "Connect":
        _stream(verb, instructions)
    elif verb.tag == "Start":
        _fork(verb, instructions)
    elif verb.tag == "Stop":
        _stream_of(verb)
        steps.append({"verb": "unfork"})
    elif verb.tag == "Redirect":
        method = verb.get("method", "POST").upper()
        if method not in ("GET", "POST"):
            raise TwimlError("<Redirect method> must be GET or POST")
        steps.append({"verb": "redirect", "url": _url(verb, verb.text or "", base_url, egress.HTTP_SCHEMES),
                      "method": method})
    elif verb.tag == "Dial":
        instructions.dial = _dial(verb, base_url)
    else:
        raise TwimlError(f"the TwiML verb <{verb.tag}> is not supported; supported are {SUPPORTED}")


def parse(twiml: str, base_url: str = "") -> CallInstructions:
    """The program of a TwiML document; relative URLs (<Play>, <Redirect>) are taken from ``base_url``,
    the document's own."""
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
        if instructions.steps and instructions.steps[-1]["verb"] in ("connect", "hangup", "redirect"):
            raise TwimlError(f"<{verb.tag}> after <Connect>, <Redirect> or <Hangup> is never reached")
        _step(verb, instructions, base_url)
        if verb.tag == "Reject":
            break  # Twilio ignores what follows it
    if instructions.dial is not None and len(root) > 1:
        raise TwimlError("<Dial> must be the only verb of its document here")
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
    return parse(response.body.decode("utf-8", errors="replace"), response.url)
