"""A minimal synchronous Redis client for the gateway worker.

Why: ``import redis`` (redis-py 8) pulls in asyncio, ssl, cluster and observability modules and
adds ~21 MB of resident memory to a process; a gateway worker must stay under ~40 MB. This speaks
RESP2 over one socket and implements only the calls the worker makes, with redis-py's names and
return types (bytes), so ``store.Store`` works with either client.

URLs: redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/sock[?db=N].
One connection, reconnected on the next call after an error; not thread-safe (one loop thread).
"""
from __future__ import annotations

import hashlib
import socket
from urllib.parse import parse_qs, unquote, urlparse


class RedisError(Exception):
    pass


class ConnectionError(RedisError):  # noqa: A001 (mirrors redis-py)
    pass


class ResponseError(RedisError):
    pass


def _enc(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, bool):
        return b"1" if v else b"0"
    if isinstance(v, (int, float)):
        return repr(v).encode()
    raise TypeError(f"cannot send {type(v).__name__} to redis")


class _Commands:
    """Command builders shared by the client and its pipeline (each returns self._call(...))."""

    def _call(self, *args, post=None):  # pragma: no cover - overridden
        raise NotImplementedError

    def ping(self):
        return self._call("PING")

    def exists(self, *keys):
        return self._call("EXISTS", *keys)

    def delete(self, *keys):
        return self._call("DEL", *keys)

    def get(self, key):
        return self._call("GET", key)

    def set(self, key, value, ex=None):
        return self._call("SET", key, value, *(("EX", ex) if ex else ()))

    def incr(self, key):
        return self._call("INCR", key)

    def hset(self, key, field=None, value=None, mapping=None):
        items = [] if field is None else [field, value]
        for k, v in (mapping or {}).items():
            items += [k, v]
        return self._call("HSET", key, *items)

    def hget(self, key, field):
        return self._call("HGET", key, field)

    def hgetall(self, key):
        return self._call("HGETALL", key, post=lambda r: dict(zip(r[::2], r[1::2], strict=True)))

    def sadd(self, key, *members):
        return self._call("SADD", key, *members)

    def srem(self, key, *members):
        return self._call("SREM", key, *members)

    def sismember(self, key, member):
        return self._call("SISMEMBER", key, member, post=bool)

    def smembers(self, key):
        return self._call("SMEMBERS", key, post=set)

    def lpop(self, key, count=None):
        return self._call("LPOP", key, *((count,) if count else ()))

    def lrange(self, key, start, end):
        return self._call("LRANGE", key, start, end)

    def llen(self, key):
        return self._call("LLEN", key)

    def rpush(self, key, *values):
        return self._call("RPUSH", key, *values)

    def zrange(self, key, start, end, withscores=False):
        if not withscores:
            return self._call("ZRANGE", key, start, end)
        return self._call("ZRANGE", key, start, end, "WITHSCORES",
                          post=lambda r: [(r[i], float(r[i + 1])) for i in range(0, len(r), 2)])

    def time(self):
        return self._call("TIME", post=lambda r: (int(r[0]), int(r[1])))

    def blpop(self, keys, timeout=0):
        """(key, value) from the first non-empty list, waiting up to timeout s; None on timeout.
        The client's socket_timeout must be longer than timeout."""
        return self._call("BLPOP", *keys, timeout, post=tuple)

    def xadd(self, name, fields, maxlen=None, approximate=True):
        args = ["XADD", name]
        if maxlen is not None:
            args += ["MAXLEN", "~" if approximate else "=", maxlen]
        args.append("*")
        for k, v in fields.items():
            args += [k, v]
        return self._call(*args)

    def evalsha(self, sha, numkeys, *keys_and_args):
        return self._call("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, script, numkeys, *keys_and_args):
        return self._call("EVAL", script, numkeys, *keys_and_args)


class MiniRedis(_Commands):
    def __init__(self, url: str, socket_timeout: float = 5.0, socket_connect_timeout: float = 5.0):
        u = urlparse(url)
        q = parse_qs(u.query)
        self.unix_path = u.path if u.scheme == "unix" else None
        self.host = u.hostname or "localhost"
        self.port = u.port or 6379
        self.tls = u.scheme == "rediss"
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        if u.scheme == "unix":
            self.db = int(q.get("db", ["0"])[0])
        else:
            self.db = int(u.path.strip("/") or q.get("db", ["0"])[0])
        self.timeout = socket_timeout
        self.connect_timeout = socket_connect_timeout
        self._sock = None
        self._buf = b""

    @classmethod
    def from_url(cls, url: str, **kw) -> MiniRedis:
        return cls(url, **kw)

    # ---- connection ------------------------------------------------------------------------
    def _connect(self):
        try:
            if self.unix_path:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.connect_timeout)
                s.connect(self.unix_path)
            else:
                s = socket.create_connection((self.host, self.port), self.connect_timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls:
                    import ssl  # only when asked for

                    s = ssl.create_default_context().wrap_socket(s, server_hostname=self.host)
            s.settimeout(self.timeout)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to redis: {exc}") from exc
        self._sock, self._buf = s, b""
        if self.password:
            auth = ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]
            self._roundtrip([auth])
        if self.db:
            self._roundtrip([["SELECT", self.db]])

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _roundtrip(self, commands: list[list]) -> list:
        """Send commands, read one reply each; errors inside replies are returned, not raised."""
        if self._sock is None:
            self._connect()
        out = []
        for cmd in commands:
            out.append(b"*%d\r\n" % len(cmd))
            for a in cmd:
                b = _enc(a)
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        try:
            self._sock.sendall(b"".join(out))
            return [self._read() for _ in commands]
        except (OSError, RedisError) as exc:
            self.close()
            if isinstance(exc, RedisError):
                raise
            raise ConnectionError(f"redis connection lost: {exc}") from exc

    def _line(self) -> bytes:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 2:]
                return line
            self._fill()

    def _fill(self):
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self._buf += chunk

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            return ResponseError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self._buf) < n + 2:
                self._fill()
            data, self._buf = self._buf[:n], self._buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"bad reply from redis: {line[:80]!r}")

    # ---- commands --------------------------------------------------------------------------
    def _call(self, *args, post=None):
        reply = self._roundtrip([list(args)])[0]
        if isinstance(reply, ResponseError):
            raise reply
        return post(reply) if post and reply is not None else reply

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self, transaction)

    def register_script(self, script: str) -> Script:
        return Script(self, script)


class Pipeline(_Commands):
    def __init__(self, client: MiniRedis, transaction: bool):
        self.client = client
        self.transaction = transaction
        self.commands: list[tuple[list, object]] = []

    def _call(self, *args, post=None):
        self.commands.append((list(args), post))
        return self

    def execute(self, raise_on_error: bool = True) -> list:
        """The replies in order; raise_on_error=False: a command's error is its reply (the others ran)."""
        cmds = [c for c, _ in self.commands]
        if self.transaction:
            replies = self.client._roundtrip([["MULTI"], *cmds, ["EXEC"]])[-1]
            if isinstance(replies, ResponseError):
                raise replies
        else:
            replies = self.client._roundtrip(cmds)
        out = []
        for (_, post), reply in zip(self.commands, replies or [], strict=False):
            if isinstance(reply, ResponseError):
                if raise_on_error:
                    raise reply
                out.append(reply)
                continue
            out.append(post(reply) if post and reply is not None else reply)
        self.commands = []
        return out

    def __len__(self) -> int:
        return len(self.commands)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.commands = []


class Script:
    def __init__(self, client: MiniRedis, script: str):
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    def __call__(self, keys=(), args=(), client=None):
        c = client if client is not None else self.client  # an empty pipeline is falsy
        try:
            return c.evalsha(self.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return c.eval(self.script, len(keys), *keys, *args)
