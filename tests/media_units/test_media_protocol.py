"""Message shapes, field by field, against docs/media-protocol.md (and the design doc)."""
import base64
import json
import re

import pytest

from media.protocol import (
    L16_16K,
    MULAW_8K,
    AgentClear,
    AgentMark,
    AgentMedia,
    AgentUnknown,
    ProtocolError,
    StreamEncoder,
    new_stream_sid,
    parse_agent_message,
)

ACC = "AC" + "a" * 32
CALL = "CA" + "b" * 32


def test_stream_sid_shape():
    sids = {new_stream_sid() for _ in range(100)}
    assert len(sids) == 100
    for sid in sids:
        assert re.fullmatch(r"MZ[0-9a-f]{32}", sid)
    assert re.fullmatch(r"MZ[0-9a-f]{32}", StreamEncoder(ACC, CALL).stream_sid)


def test_connected_exact():
    enc = StreamEncoder(ACC, CALL)
    msg = json.loads(enc.connected())
    assert msg == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert enc.seq == 0  # connected carries no sequence number and does not count


def test_start_fields():
    enc = StreamEncoder(ACC, CALL, custom_parameters={"from_number": "+15551230000", "to_number": "+15559870000"})
    enc.connected()
    msg = json.loads(enc.start())
    assert list(msg) == ["event", "sequenceNumber", "streamSid", "start"]
    assert msg["event"] == "start"
    assert msg["sequenceNumber"] == "1"
    assert msg["streamSid"] == enc.stream_sid
    start = msg["start"]
    assert list(start) == ["streamSid", "accountSid", "callSid", "tracks", "customParameters", "mediaFormat"]
    assert start["streamSid"] == enc.stream_sid
    assert start["accountSid"] == ACC
    assert start["callSid"] == CALL
    assert start["tracks"] == ["inbound"]
    assert start["customParameters"] == {"from_number": "+15551230000", "to_number": "+15559870000"}
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert enc.bytes_per_frame == 160


def test_start_l16_option():
    enc = StreamEncoder(ACC, CALL, encoding="audio/x-l16")
    msg = json.loads(enc.start())
    assert msg["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
    assert msg["start"]["mediaFormat"] == L16_16K and MULAW_8K["encoding"] == "audio/x-mulaw"
    assert msg["start"]["customParameters"] == {}
    assert enc.bytes_per_frame == 640
    with pytest.raises(ValueError):
        StreamEncoder(ACC, CALL, encoding="audio/x-opus")


def test_media_fields_and_counters():
    enc = StreamEncoder(ACC, CALL)
    enc.connected()
    enc.start()
    payloads = [bytes([i]) * 160 for i in range(5)]
    for i, p in enumerate(payloads):
        msg = json.loads(enc.media(p, (i + 1) * 20))
        assert list(msg) == ["event", "sequenceNumber", "streamSid", "media"]
        assert msg["event"] == "media"
        assert msg["sequenceNumber"] == str(i + 2)  # start was "1"
        assert msg["streamSid"] == enc.stream_sid
        media = msg["media"]
        assert list(media) == ["track", "chunk", "timestamp", "payload"]
        assert media["track"] == "inbound"
        assert media["chunk"] == str(i + 1)
        assert media["timestamp"] == str((i + 1) * 20)
        assert base64.b64decode(media["payload"], validate=True) == p
    # later messages keep counting the same sequence
    assert json.loads(enc.mark("m"))["sequenceNumber"] == "7"
    assert json.loads(enc.media(b"\xff" * 160, 120))["media"]["chunk"] == "6"


@pytest.mark.parametrize("sid", [None, 'odd"sid\\with%s%d', "MZ\u00e9"])
def test_fast_media_equals_json_dumps(sid):
    a = StreamEncoder(ACC, CALL, stream_sid=sid)
    b = StreamEncoder(ACC, CALL, stream_sid=a.stream_sid)
    for n in (0, 1, 2, 3, 160, 1000):
        p = bytes(range(256))[:n] if n <= 256 else bytes(n)
        assert a.media(p, 20 * n) == b.media_json(p, 20 * n)
        json.loads(a.media(p, 0))
        b.media_json(p, 0)


def test_dtmf_mark_stop_fields():
    enc = StreamEncoder(ACC, CALL)
    enc.start()
    d = json.loads(enc.dtmf("5"))
    assert d == {"event": "dtmf", "streamSid": enc.stream_sid, "sequenceNumber": "2",
                 "dtmf": {"track": "inbound_track", "digit": "5"}}
    m = json.loads(enc.mark("utterance-1"))
    assert m == {"event": "mark", "streamSid": enc.stream_sid, "sequenceNumber": "3",
                 "mark": {"name": "utterance-1"}}
    s = json.loads(enc.stop())
    assert s == {"event": "stop", "streamSid": enc.stream_sid, "sequenceNumber": "4",
                 "stop": {"accountSid": ACC, "callSid": CALL}}


def test_mark_name_escaped():
    enc = StreamEncoder(ACC, CALL)
    name = 'a "quoted"\\name\n\u00fc'
    assert json.loads(enc.mark(name))["mark"]["name"] == name


# --- agent -> platform ------------------------------------------------------------------------------

def test_parse_media_mark_clear():
    p = bytes(range(200))
    m = parse_agent_message(json.dumps({"event": "media", "streamSid": "MZ1",
                                        "media": {"payload": base64.b64encode(p).decode()}}))
    assert m == AgentMedia(p, "MZ1")
    assert parse_agent_message('{"event":"mark","streamSid":"MZ1","mark":{"name":"n"}}') == AgentMark("n", "MZ1")
    assert parse_agent_message('{"event":"clear","streamSid":"MZ1"}') == AgentClear("MZ1")
    assert parse_agent_message(b'{"event":"clear"}') == AgentClear(None)  # bytes accepted, sid optional


def test_parse_unknown_is_not_an_error():
    m = parse_agent_message('{"event":"sendDigits","digits":"123"}')
    assert isinstance(m, AgentUnknown) and m.event == "sendDigits"


@pytest.mark.parametrize("raw", [
    "", "{", "not json", "[1,2]", "42", "null", '{"no":"event"}', '{"event":5}',
    '{"event":"media"}', '{"event":"media","media":{}}', '{"event":"media","media":{"payload":7}}',
    '{"event":"media","media":{"payload":"***not base64***"}}', '{"event":"media","media":{"payload":"abc"}}',
    '{"event":"mark"}', '{"event":"mark","mark":{"name":1}}', '{"event":"mark","mark":"n"}',
    b"\xff\xfe\x00garbage",
])
def test_parse_malformed_returns_error_value(raw):
    m = parse_agent_message(raw)
    assert isinstance(m, ProtocolError)
    assert m.error
    assert len(m.excerpt) <= 120
