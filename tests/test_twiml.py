"""The TwiML a Twilio app sends to start a media stream is understood; anything else is refused by name."""
import pytest

from telephony.calls.twiml import TwimlError, parse


def test_connect_stream_with_parameters_becomes_stream_instructions():
    instructions = parse(
        '<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="2"/><Connect>'
        '<Stream url="wss://agent.example/media"><Parameter name="lead" value="42"/>'
        '<Parameter name="lang" value="en"/></Stream></Connect></Response>'
    )
    assert instructions.stream_url == "wss://agent.example/media"
    assert instructions.parameters == {"lead": "42", "lang": "en"}
    assert instructions.pause_seconds == 2 and not instructions.hangup


def test_hangup():
    assert parse("<Response><Hangup/></Response>").hangup


@pytest.mark.parametrize(
    "twiml, message",
    [
        ("<Response><Say>Hello</Say></Response>", "<Say> is not supported"),
        ("<Response><Dial>+14155550100</Dial></Response>", "<Dial> is not supported"),
        ("<Response><Connect><Stream url='http://x'/></Connect></Response>", "ws:// or wss://"),
        ("<Response><Connect><Room/></Connect></Response>", "exactly one <Stream>"),
        ("<Response><Hangup/><Pause/></Response>", "never reached"),
        ("<Say>Hi</Say>", "must start with <Response>"),
        ("<Response>", "not well-formed"),
    ],
)
def test_unsupported_or_broken_twiml_is_refused_naming_the_problem(twiml, message):
    with pytest.raises(TwimlError, match=message):
        parse(twiml)
