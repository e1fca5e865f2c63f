"""Cluster-wide limits against a real Redis, with several OS processes competing."""
import multiprocessing
import os
import signal
import threading
import time
import uuid

import pytest
import redis

from telephony.leases import ConcurrencyLimiter, RateLimiter, acquire_all, release_all, renew_all

# fork: workers are plain functions of this module and get their own Redis connections after the fork.
ctx = multiprocessing.get_context("fork")


# --- concurrency -----------------------------------------------------------------------------------

def test_acquire_release_basics(redis_client):
    lim = ConcurrencyLimiter(redis_client, "conc:basic", 2)
    assert lim.acquire("a")
    assert lim.acquire("a")  # idempotent: same holder, same slot
    assert lim.acquire("b")
    assert not lim.acquire("c")
    assert lim.count() == 2
    assert sorted(lim.holders()) == ["a", "b"]
    assert lim.release("a")
    assert not lim.release("a")  # already gone
    assert lim.acquire("c")
    assert lim.renew(["b", "c", "ghost"]) == ["ghost"]
    assert redis_client.pttl("conc:basic") > 0  # idle keys do not live forever


def test_zero_limit_admits_nobody(redis_client):
    assert not ConcurrencyLimiter(redis_client, "conc:zero", 0).acquire("a")


def test_expired_lease_is_dropped_and_reported_lost(redis_client):
    lim = ConcurrencyLimiter(redis_client, "conc:exp", 1)
    assert lim.acquire("a", ttl=0.2)
    time.sleep(0.5)
    assert lim.count() == 0
    assert lim.renew(["a"]) == ["a"]
    assert lim.acquire("b")


def _requester_process(url, key, limit, n_threads, seconds, results):
    client = redis.Redis.from_url(url)
    lim = ConcurrencyLimiter(client, key, limit)
    counts = {"acquired": 0, "released": 0, "refused": 0}
    lock = threading.Lock()

    def run(seed):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            holder = f"{os.getpid()}-{seed}-{uuid.uuid4().hex[:8]}"
            if lim.acquire(holder, ttl=10):
                with lock:
                    counts["acquired"] += 1
                time.sleep(0.002 + (hash(holder) % 20) / 1000)
                released = lim.release(holder)
                with lock:
                    counts["released"] += int(released)
            else:
                with lock:
                    counts["refused"] += 1
                time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(counts)


def test_concurrency_cap_holds_across_processes(redis_url, redis_client):
    key, limit = "conc:cluster", 5
    results = ctx.Queue()
    # 15 requesters: 5 processes x 3 threads.
    procs = [ctx.Process(target=_requester_process, args=(redis_url, key, limit, 3, 3.0, results))
             for _ in range(5)]
    for p in procs:
        p.start()
    samples = []
    while any(p.is_alive() for p in procs):
        samples.append(redis_client.zcard(key))
    totals = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    acquired = sum(t["acquired"] for t in totals)
    released = sum(t["released"] for t in totals)
    assert len(samples) > 100
    assert max(samples) <= limit
    assert max(samples) == limit  # there really was contention
    assert sum(t["refused"] for t in totals) > 0
    assert acquired > 50
    assert acquired == released
    assert redis_client.zcard(key) == 0


def _hold_and_renew(url, key, ready, ttl):
    client = redis.Redis.from_url(url)
    lim = ConcurrencyLimiter(client, key, 1)
    assert lim.acquire("doomed", ttl=ttl)
    ready.set()
    while True:  # renews until killed
        lim.renew(["doomed"], ttl=ttl)
        time.sleep(0.2)


def test_dead_holder_slot_comes_back_within_ttl(redis_url, redis_client):
    key, ttl = "conc:dead", 2.0
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_and_renew, args=(redis_url, key, ready, ttl))
    proc.start()
    try:
        assert ready.wait(20)
        lim = ConcurrencyLimiter(redis_client, key, 1)
        # While the holder renews, its slot outlives the lease ttl.
        end = time.monotonic() + ttl * 1.5
        while time.monotonic() < end:
            assert not lim.acquire("waiter", ttl=ttl)
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    killed_at = time.monotonic()
    while not lim.acquire("waiter", ttl=ttl):
        assert time.monotonic() - killed_at < ttl + 1.0, "dead holder's slot did not come back in ttl + 1 s"
        time.sleep(0.05)
    assert lim.holders() == ["waiter"]


def test_multi_key_all_or_nothing(redis_client):
    carrier = ConcurrencyLimiter(redis_client, "conc:carrier:1", 2)
    tenant = ConcurrencyLimiter(redis_client, "conc:tenant:1", 1)
    other_tenant = ConcurrencyLimiter(redis_client, "conc:tenant:2", 5)
    assert acquire_all([carrier, tenant], "call-1")
    assert not acquire_all([carrier, tenant], "call-2")  # tenant full
    assert carrier.count() == 1  # the carrier slot was not taken by the failed attempt
    assert acquire_all([carrier, other_tenant], "call-3")  # carrier now full (2)
    assert not acquire_all([carrier, other_tenant], "call-4")
    assert other_tenant.count() == 1
    assert renew_all([carrier, tenant], ["call-1"]) == []
    assert release_all([carrier, tenant], "call-1") == 2
    assert acquire_all([carrier, tenant], "call-2")
    assert sorted(carrier.holders()) == ["call-2", "call-3"]


def _pair_requester(url, n_threads, seconds, results):
    client = redis.Redis.from_url(url)
    carrier = ConcurrencyLimiter(client, "conc:pair:carrier", 4)
    tenants = [ConcurrencyLimiter(client, f"conc:pair:tenant:{i}", 3) for i in range(2)]
    taken = []

    def run(i):
        tenant = tenants[i % 2]
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            holder = f"{os.getpid()}-{i}-{n}"
            n += 1
            if acquire_all([carrier, tenant], holder, ttl=10):
                taken.append(1)
                time.sleep(0.005)
                assert release_all([carrier, tenant], holder) == 2
            else:
                time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(len(taken))


def test_multi_key_caps_hold_under_contention(redis_url, redis_client):
    results = ctx.Queue()
    procs = [ctx.Process(target=_pair_requester, args=(redis_url, 4, 2.0, results)) for _ in range(3)]
    for p in procs:
        p.start()
    max_carrier = max_t0 = max_t1 = 0
    while any(p.is_alive() for p in procs):
        with redis_client.pipeline(transaction=True) as pipe:
            c, t0, t1 = pipe.zcard("conc:pair:carrier").zcard("conc:pair:tenant:0").zcard("conc:pair:tenant:1").execute()
        assert c == t0 + t1  # every holder is on its carrier and its tenant, never on one only
        max_carrier, max_t0, max_t1 = max(max_carrier, c), max(max_t0, t0), max(max_t1, t1)
    grants = sum(results.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert max_carrier <= 4 and max_t0 <= 3 and max_t1 <= 3
    assert grants > 20


# --- calls per second ------------------------------------------------------------------------------

def test_rate_limiter_burst_and_wait(redis_client):
    lim = RateLimiter(redis_client, "cps:unit", rate=10, burst=2)
    assert [lim.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # 1 + burst back to back
    wait = lim.try_acquire()
    assert 0 < wait <= 0.1 + 1e-6
    strict = RateLimiter(redis_client, "cps:strict", rate=2, burst=0)
    assert strict.try_acquire() == 0.0
    assert 0.4 < strict.try_acquire() <= 0.5
    assert strict.acquire(timeout=5)  # blocks about half a second
    assert not strict.acquire(timeout=0.01)
    with pytest.raises(ValueError):
        RateLimiter(redis_client, "cps:bad", rate=0)
    with pytest.raises(ValueError):
        RateLimiter(redis_client, "cps:bad", rate=1, burst=-1)


def test_default_burst_allows_one_extra(redis_client):
    lim = RateLimiter(redis_client, "cps:default", rate=5)
    assert lim.burst == 1
    assert lim.try_acquire() == 0.0
    assert lim.try_acquire() == 0.0
    assert 0.1 < lim.try_acquire() <= 0.2


def _pacer(url, key, rate, start_at, end_at, results):
    client = redis.Redis.from_url(url)
    lim = RateLimiter(client, key, rate)
    while time.time() < start_at:
        time.sleep(0.001)
    grants = 0
    while True:
        now = time.time()
        if now >= end_at:
            break
        wait = lim.try_acquire()
        if wait == 0:
            grants += 1
        else:
            time.sleep(min(wait, max(0.0, end_at - now)))
    results.put(grants)


def test_cps_is_cluster_wide(redis_url):
    rate, duration = 20, 5.0
    results = ctx.Queue()
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=_pacer, args=(redis_url, "cps:cluster", rate, start_at, start_at + duration, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    per_process = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    total = sum(per_process)
    expected = rate * duration
    assert abs(total - expected) <= 0.05 * expected + 1, (total, per_process)
    assert sum(1 for g in per_process if g > 0) >= 2  # the grants really were shared out
