"""The kernel every app may import: Redis client, log format, tenancy helpers for Channels and the
admin. It imports no app and not the project package (voiceplatform),
so dependencies only point down: voiceplatform -> apps -> core. `core.logs` is stdlib only, so the
SIP gateway can use it without loading Django."""
