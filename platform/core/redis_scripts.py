"""Lua scripts registered once per Redis client (no Django: the SIP gateway uses it too)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def registered(client, scripts: Callable[[Any], T]) -> T:
    """`scripts(client)` (a class whose attributes are `client.register_script(...)`), made once per
    client and kept on it: redis-py caches each script's SHA there and falls back to EVAL."""
    made = client.__dict__.setdefault("_voiceplatform_scripts", {})
    if scripts not in made:
        made[scripts] = scripts(client)
    return made[scripts]
