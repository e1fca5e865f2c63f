"""The one guard for every connection the platform opens to an address someone else gave it (a TwiML
`Url`, status callbacks, agent stream URLs, the redirects they answer with).

- only http/https (or ws/wss where a socket is wanted);
- the host is resolved once, and the connection is made to the address that was checked (a name that
  answers differently the second time - DNS rebinding - gains nothing);
- loopback, private, link-local, multicast, reserved and other non-global addresses are refused unless
  an allow-list entry covers them: a host name (``agent.internal``), a host and port
  (``127.0.0.1:8765``, ``[::1]:8765``, ``agent.internal:443``), an address or a CIDR (``10.0.0.0/8``).

A refusal is an ``EgressRefused`` whose message names the rule; nothing is sent to a refused target.
No Django here: the SIP gateway uses it too.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl as ssl_lib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

HTTP_SCHEMES = ("http", "https")
WS_SCHEMES = ("ws", "wss")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_REDIRECTS = 3
ENV_ALLOW = "OUTBOUND_ALLOW"


class EgressRefused(ValueError):
    """The target is not allowed; the message says which rule refused it."""


class EgressUnresolved(EgressRefused):
    """The host name does not resolve (now): nothing can be sent to it."""


class EgressFailed(OSError):
    """An allowed target could not be reached or answered badly; the message is ours, not the target's."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowEntry:
    host: str = ""              # a host name as written in URLs (lower case)
    network: Network | None = None  # or an address / CIDR
    port: int | None = None

    def covers(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        return self.host == host.lower()


def parse_entry(entry: str) -> AllowEntry:
    entry = entry.strip()
    if "/" in entry:
        return AllowEntry(network=ipaddress.ip_network(entry, strict=False))
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
        port = int(port_text)
    try:
        return AllowEntry(network=ipaddress.ip_network(host), port=port)
    except ValueError:
        return AllowEntry(host=host.lower(), port=port)


def parse_allow(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    return tuple(parse_entry(entry) for entry in entries if entry.strip())


def allow_from_env() -> tuple[AllowEntry, ...]:
    """For processes without Django (the gateway): OUTBOUND_ALLOW, as settings reads it."""
    return parse_allow(os.environ.get(ENV_ALLOW, "").split(","))


def _refused_range(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for name, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return name
    return "" if address.is_global else "reserved"


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise EgressUnresolved(f"the host {host!r} does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check(url: str, allow: Iterable[AllowEntry | str] = (), schemes: tuple[str, ...] = HTTP_SCHEMES) -> Target:
    """The target to connect to, or EgressRefused. Every address the host resolves to must pass."""
    entries = tuple(entry if isinstance(entry, AllowEntry) else parse_entry(entry) for entry in allow)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        names = [f"{name}://" for name in schemes]
        wanted = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        raise EgressRefused(f"must be a {wanted} URL, not {scheme + '://' if scheme else 'one without a scheme'}")
    host = parts.hostname or ""
    if not host:
        raise EgressRefused("the URL has no host")
    if parts.username or parts.password:
        raise EgressRefused("URLs with a user name or password are not allowed")
    port = port or DEFAULT_PORTS[scheme]
    addresses = _resolve(host, port)
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        kind = _refused_range(address)
        if kind and not any(entry.covers(host, address, port) for entry in entries):
            raise EgressRefused(f"{host} is a {kind} address, refused for outbound requests "
                                f"(allow it with {ENV_ALLOW})")
    return Target(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the certificate verified for the host name."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl_lib.create_default_context())
        self._address = target.address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == DEFAULT_PORTS[target.scheme] else f"{host}:{target.port}"


def request(url: str, *, allow: Iterable[AllowEntry | str] = (), method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 5.0, max_bytes: int = 1 << 20,
            max_redirects: int = MAX_REDIRECTS) -> Response:
    """One HTTP request through the guard. Redirects are followed (each target checked again; a POST
    becomes a GET after 301/302/303, as browsers do) up to ``max_redirects``. Raises EgressRefused,
    or EgressFailed with a message of our own (never the target's body). ``max_bytes=0``: the body is
    not read (only the status matters)."""
    allow = tuple(entry if isinstance(entry, AllowEntry) else parse_entry(entry) for entry in allow)
    for _ in range(max_redirects + 1):
        target = check(url, allow)
        conn_class = _PinnedHTTPSConnection if target.secure else _PinnedHTTPConnection
        conn = conn_class(target, timeout)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", _host_header(target))
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                if response.status in (301, 302, 303) and method != "GET":
                    method, body = "GET", None
                continue
            data = response.read(max_bytes + 1) if max_bytes else b""
        except TimeoutError:
            raise EgressFailed(f"no answer within {timeout:g} s") from None
        except ssl_lib.SSLError as exc:
            raise EgressFailed(f"TLS failed ({exc.reason or 'handshake'})") from None
        except ConnectionRefusedError:
            raise EgressFailed("connection refused") from None
        except (OSError, http.client.HTTPException) as exc:
            raise EgressFailed(f"connection failed ({type(exc).__name__})") from None
        finally:
            conn.close()
        if max_bytes and len(data) > max_bytes:
            raise EgressFailed(f"the answer is larger than {max_bytes} bytes")
        return Response(status=response.status, headers=response.headers, body=data, url=url)
    raise EgressFailed(f"more than {max_redirects} redirects" if max_redirects else "redirects are not followed")
