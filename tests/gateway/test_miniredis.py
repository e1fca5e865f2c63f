"""The worker's small Redis client against the embedded redis-server."""
from __future__ import annotations

import pytest

from telephony.gateway import miniredis
from telephony.gateway.store import Store


def test_commands_pipeline_scripts(redis_server, r):
    m = miniredis.MiniRedis.from_url(redis_server.url)
    assert m.ping() == b"PONG"
    m.delete("mr:h", "mr:s", "mr:l", "mr:x", "mr:k")
    assert m.hset("mr:h", mapping={"a": 1, "b": "x", "c": 1.5}) == 3
    assert m.hgetall("mr:h") == {b"a": b"1", b"b": b"x", b"c": b"1.5"}
    assert m.hget("mr:h", "missing") is None
    assert m.sadd("mr:s", "1", "2") == 2 and m.sismember("mr:s", "2") is True
    assert m.smembers("mr:s") == {b"1", b"2"}
    m.rpush("mr:l", "a", "b", "c")
    assert m.lpop("mr:l", 2) == [b"a", b"b"] and m.lpop("mr:l") == b"c" and m.lpop("mr:l", 5) is None
    m.set("mr:k", "v", ex=5)
    assert 0 < r.ttl("mr:k") <= 5
    p = m.pipeline(transaction=True)
    p.incr("mr:n")
    p.xadd("mr:x", {"event": "{}"}, maxlen=10)
    p.hget("mr:h", "b")
    n, xid, hb = p.execute()
    assert n >= 1 and b"-" in xid and hb == b"x"
    assert r.xlen("mr:x") == 1
    script = m.register_script("return {KEYS[1], ARGV[1]}")
    assert script(keys=["k"], args=["v"]) == [b"k", b"v"]
    with pytest.raises(miniredis.ResponseError):
        m.lpop("mr:h")  # WRONGTYPE
    assert m.ping() == b"PONG"  # still usable after an error reply
    m.rpush("mr:l", "w")
    assert m.blpop(["mr:empty", "mr:l"], 1) == (b"mr:l", b"w")
    assert m.blpop(["mr:l"], 0.1) is None  # timed out
    Store(m)  # the worker's Store works on it


def test_connection_error(tmp_path):
    m = miniredis.MiniRedis.from_url(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(miniredis.RedisError):
        m.ping()
