"""What the Twilio-compatibility tests (tests/twilio/) share: Twilio's own client pointed at daphne."""
from twilio.rest import Client

from tenants import auth_token

ACME_NUMBER = "+14155550161"
CALLEE = "+14155550199"
STREAM_TWIML = '<Response><Connect><Stream url="wss://127.0.0.1:9/agent"/></Connect></Response>'


def twilio_client(username, password, account_sid, port) -> Client:
    client = Client(username, password, account_sid)
    client.api.base_url = f"http://127.0.0.1:{port}"
    return client


def acme_client(acme, port) -> Client:
    """Acme's code as Twilio's quick start writes it: Client(account_sid, auth_token)."""
    return twilio_client(acme.account_sid, auth_token.current(acme), None, port)
