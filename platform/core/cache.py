"""Django's Redis cache with one connection pool per process.

Django builds a cache object per thread and, under ASGI, per request (its cache handler is
context-local), and each of Django's Redis cache objects builds its own connection pool: every request
that used the cache opened a new Redis connection, at about 1 ms of CPU (redis-py reads its own
package metadata per connection). Here every cache object of a process shares one client."""
from __future__ import annotations

from functools import cache, cached_property

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


@cache
def _shared_client(servers: tuple[str, ...], options: tuple) -> RedisCacheClient:
    return RedisCacheClient(list(servers), **dict(options))


class ProcessRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        return _shared_client(tuple(self._servers), tuple(sorted(self._options.items())))
