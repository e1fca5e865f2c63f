"""A Twilio app's TwiML becomes the program the call's media host runs, verb after verb; anything the
platform does not do is refused by name."""
import pytest

from telephony.calls.twiml import Dial, TwimlError, parse


def test_connect_stream_with_parameters_ends_the_program_and_names_the_agent():
    instructions = parse(
        '<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="2"/><Connect>'
        '<Stream url="wss://agent.example/media"><Parameter name="lead" value="42"/>'
        '<Parameter name="lang" value="en"/></Stream></Connect></Response>'
    )
    assert instructions.stream_url == "wss://agent.example/media"
    assert instructions.parameters == {"lead": "42", "lang": "en"}
    assert instructions.steps == [
        {"verb": "pause", "seconds": 2},
        {"verb": "connect", "url": "wss://agent.example/media", "params": {"lead": "42", "lang": "en"}},
    ]


def test_an_appointment_reminder_says_plays_pauses_anywhere_and_redirects_relative_to_its_document():
    instructions = parse(
        '<Response><Say language="en-GB" loop="2">Your appointment is tomorrow.</Say><Pause/>'
        '<Play loop="0">/audio/jingle.wav</Play><Play digits="1w2"/><Pause length="3"/>'
        '<Redirect method="GET">next?step=2</Redirect></Response>',
        base_url="https://clinic.example/twiml/start",
    )
    assert instructions.steps == [
        {"verb": "say", "text": "Your appointment is tomorrow.", "voice": "en-gb", "loop": 2},
        {"verb": "pause", "seconds": 1},
        {"verb": "play", "url": "https://clinic.example/audio/jingle.wav", "loop": 0},
        {"verb": "digits", "digits": "1w2"},
        {"verb": "pause", "seconds": 3},
        {"verb": "redirect", "url": "https://clinic.example/twiml/next?step=2", "method": "GET"},
    ]
    assert instructions.stream_url == ""


def test_a_listen_only_fork_starts_and_stops_while_the_program_goes_on():
    assert parse('<Response><Start><Stream url="wss://notes.example/listen"><Parameter name="crm" value="9"/>'
                 '</Stream></Start><Say>This call is transcribed.</Say><Stop><Stream/></Stop><Hangup/></Response>'
                 ).steps == [
        {"verb": "fork", "url": "wss://notes.example/listen", "params": {"crm": "9"}},
        {"verb": "say", "text": "This call is transcribed.", "voice": "en-us", "loop": 1},
        {"verb": "unfork"}, {"verb": "hangup"}]


def test_hangup():
    assert parse("<Response><Pause length='1'/><Hangup/></Response>").steps == [
        {"verb": "pause", "seconds": 1}, {"verb": "hangup"}]


def test_a_first_reject_refuses_the_call_and_nothing_after_it_runs():
    assert parse('<Response><Reject reason="busy"/><Say>Never said</Say></Response>').steps == [
        {"verb": "reject", "reason": "busy"}]
    assert parse("<Response><Reject/></Response>").steps == [{"verb": "reject", "reason": "rejected"}]


def test_a_reject_after_another_verb_hangs_up_the_answered_call():
    assert parse("<Response><Pause/><Reject/></Response>").steps == [
        {"verb": "pause", "seconds": 1}, {"verb": "hangup"}]


def test_an_agent_hands_the_caller_to_the_front_desk_with_dial():
    assert parse('<Response><Dial callerId="+14155550100" timeout="20" action="/after-dial" method="GET">'
                 '<Number>+14155550177</Number></Dial></Response>', base_url="https://acme.example/twiml").dial == \
        Dial(to="+14155550177", caller_id="+14155550100", timeout=20, action="https://acme.example/after-dial",
             method="GET")
    assert parse("<Response><Dial><Sip>sip:desk@pbx.acme.example</Sip></Dial></Response>").dial == \
        Dial(to="sip:desk@pbx.acme.example")
    bare = parse("<Response><Dial> +14155550177 </Dial></Response>")
    assert bare.dial == Dial(to="+14155550177") and bare.steps == []


@pytest.mark.parametrize(
    "twiml, message",
    [
        ("<Response><Gather/></Response>", "<Gather> is not supported"),
        ("<Response><Dial><Number>+14155550100</Number><Number>+14155550101</Number></Dial></Response>",
         "one <Number> or <Sip>"),
        ("<Response><Dial><Conference>room</Conference></Dial></Response>", "<Dial><Conference> is not supported"),
        ("<Response><Dial record='record-from-answer'>+14155550100</Dial></Response>", "<Dial record>"),
        ("<Response><Dial timeout='2'>+14155550100</Dial></Response>", "<Dial timeout>"),
        ("<Response><Dial><Sip>+14155550100</Sip></Dial></Response>", "<Sip> holds a sip: URI"),
        ("<Response><Dial/></Response>", "needs the number"),
        ("<Response><Say>One moment.</Say><Dial>+14155550100</Dial></Response>", "only verb"),
        ("<Response><Start><Stream url='wss://x' track='both_tracks'/></Start></Response>", "inbound_track"),
        ("<Response><Start><Siprec/></Start></Response>", "exactly one <Stream>"),
        ("<Response><Connect><Stream url='http://x'/></Connect></Response>", "ws:// or wss://"),
        ("<Response><Connect><Room/></Connect></Response>", "exactly one <Stream>"),
        ("<Response><Hangup/><Pause/></Response>", "never reached"),
        ("<Response><Redirect>https://x/a</Redirect><Say>Hi</Say></Response>", "never reached"),
        ("<Response><Say></Say></Response>", "<Say> must hold text"),
        ("<Response><Reject reason='later'/></Response>", "<Reject reason>"),
        ("<Response><Play>ftp://x/a.wav</Play></Response>", "http:// or https://"),
        ("<Response><Play digits='12x'/></Response>", "<Play digits>"),
        ("<Response><Pause length='-1'/></Response>", "<Pause length>"),
        ("<Response><Say loop='many'>Hi</Say></Response>", "<Say loop>"),
        ("<Say>Hi</Say>", "must start with <Response>"),
        ("<Response>", "not well-formed"),
    ],
)
def test_unsupported_or_broken_twiml_is_refused_naming_the_problem(twiml, message):
    with pytest.raises(TwimlError, match=message):
        parse(twiml)
