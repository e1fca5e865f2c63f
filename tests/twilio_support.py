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


class TenantApp:
    """Acme's own web app (a Twilio webhook receiver): records every request it gets and answers
    each path with the (status, content type, body) the test gives, 200 and empty by default."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        app = self
        self.requests: list[dict] = []
        self.answers: dict[str, tuple[int, str, str | bytes]] = {}

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                app.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
                status, content_type, text = app.answers.get(self.path.split("?")[0], (200, "text/plain", ""))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                body = text if isinstance(text, bytes) else text.encode()  # bytes: audio files
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def validated(self, token: str, request: dict) -> bool:
        """Whether Twilio's RequestValidator, given the account's auth token, accepts the request."""
        from urllib.parse import parse_qsl

        from twilio.request_validator import RequestValidator

        params = dict(parse_qsl(request["body"].decode())) if request["method"] == "POST" else {}
        return RequestValidator(token).validate(self.url(request["path"]), params,
                                                request["headers"].get("X-Twilio-Signature", ""))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
