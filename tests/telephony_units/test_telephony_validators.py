import pytest

from telephony.validators import validate_e164, validate_host, validate_port, validate_sip_uri


@pytest.mark.parametrize("raw,normalized", [
    ("+14155550123", "+14155550123"),
    (" +1 (415) 555-0123 ", "+14155550123"),
    ("+44 20 7183 8750", "+442071838750"),
    ("+33 6 12 34 56 78", "+33612345678"),
])
def test_e164_normalizes(raw, normalized):
    assert validate_e164(raw) == normalized


@pytest.mark.parametrize("raw,message", [
    ("", "empty"),
    ("4155550123", r"must start with '\+'"),
    ("+1", "too short|cannot be parsed"),
    ("+1415555012345678", "too long"),
    ("+999 1234567", "unknown country code"),
    ("+hello", "cannot be parsed"),
    ("+1 415 555 0123 ext. 7", "extension"),
    ("+1 000 555 0123", "not a valid number"),
])
def test_e164_rejects_with_reason(raw, message):
    with pytest.raises(ValueError, match=message):
        validate_e164(raw)


def test_e164_non_strict_accepts_possible_numbers():
    assert validate_e164("+1 000 555 0123", strict=False) == "+10005550123"


@pytest.mark.parametrize("raw,normalized", [
    ("sip.Example.NET", "sip.example.net"),
    ("carrier-1.example.com.", "carrier-1.example.com"),
    ("localhost", "localhost"),
    ("192.0.2.10", "192.0.2.10"),
    ("2001:DB8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
])
def test_host_ok(raw, normalized):
    assert validate_host(raw) == normalized


@pytest.mark.parametrize("raw,message", [
    ("", "empty"),
    ("-bad.example.com", "invalid label '-bad'"),
    ("a..b", "empty label"),
    ("under_score.example", "invalid label 'under_score'"),
    ("999.1.1.1", "not a valid one"),
    ("[not-ipv6]", "bracketed"),
    ("a" * 64 + ".com", "invalid label"),
    ("host name", "invalid label"),
])
def test_host_rejects_with_reason(raw, message):
    with pytest.raises(ValueError, match=message):
        validate_host(raw)


def test_port():
    assert validate_port(5060) == 5060
    assert validate_port("5061") == 5061
    for bad, message in [(0, "out of range"), (65536, "out of range"), ("50a", "not a number"),
                         (True, "must be a number"), (50.5, "must be an integer")]:
        with pytest.raises(ValueError, match=message):
            validate_port(bad)


@pytest.mark.parametrize("uri", [
    "sip:+14155550123@sip.example.net",
    "sip:+14155550123@sip.example.net:5080;transport=tcp",
    "sips:alice@example.com",
    "sip:sip.example.net",
    "sip:alice:secret@10.0.0.1:5060;transport=udp;lr",
    "sip:bob@[2001:db8::1]:5061;transport=tls",
    "<sip:bob@example.com>",
    "sip:bob@example.com?subject=hi",
])
def test_sip_uri_ok(uri):
    assert validate_sip_uri(uri) == uri.strip("<>")


@pytest.mark.parametrize("uri,message", [
    ("", "empty"),
    ("tel:+14155550123", "must start with 'sip:'"),
    ("sip:", "nothing after the scheme"),
    ("sip:@example.com", "empty user part"),
    ("sip:bo b@example.com", "invalid characters in the user part"),
    ("sip:bob@exa_mple.com", "invalid label"),
    ("sip:bob@example.com:99999", "out of range"),
    ("sip:bob@example.com:", "not a number"),
    ("sip:bob@example.com;transport=pigeon", "transport 'pigeon'"),
    ("sip:bob@2001:db8::1", "in brackets"),
    ("sip:bob@[2001:db8::1", "unclosed"),
])
def test_sip_uri_rejects_with_reason(uri, message):
    with pytest.raises(ValueError, match=message):
        validate_sip_uri(uri)
