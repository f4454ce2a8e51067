"""Assistant settings: a Django setting of the same name (tests), else the environment, else the default.

See docs/assistant.md (Limits) for what each one bounds.
"""

from __future__ import annotations

from mejai.env import env_float


def _number(name: str, default: float, *, minimum: float) -> float:
    return env_float(name, default, minimum=minimum)


def max_frame_bytes() -> int:
    return int(_number("ASSISTANT_MAX_FRAME_BYTES", 12 * 1024 * 1024, minimum=64 * 1024))


def max_images() -> int:
    return int(_number("ASSISTANT_MAX_IMAGES", 4, minimum=0))


def max_image_bytes() -> int:
    return int(_number("ASSISTANT_MAX_IMAGE_BYTES", 5 * 1000 * 1000, minimum=1024))


def auth_timeout_seconds() -> float:
    return _number("ASSISTANT_AUTH_TIMEOUT_SECONDS", 5.0, minimum=0.1)


def backlog_frames() -> int:
    return int(_number("ASSISTANT_BACKLOG_FRAMES", 5000, minimum=10))


def backlog_seconds() -> int:
    return int(_number("ASSISTANT_BACKLOG_SECONDS", 3600, minimum=10))


def coalesce_seconds() -> float:
    return _number("ASSISTANT_COALESCE_MS", 40, minimum=0) / 1000


def watchdog_seconds() -> float:
    return _number("ASSISTANT_WATCHDOG_SECONDS", 60, minimum=0.1)


def driver_lock_seconds() -> int:
    """How long a client's driver lock lives without renewal (its process died: another takes over)."""
    return int(_number("ASSISTANT_DRIVER_LOCK_SECONDS", 30, minimum=3))


def db_threads() -> int:
    """Threads of the process's assistant database pool (assistant/sync.py); each holds at most one
    pooled connection while it works."""
    return int(_number("ASSISTANT_DB_THREADS", 8, minimum=1))


def redis_connections() -> int:
    """Connections of the process's backlog Redis pool (per event loop); a command waits for one past it."""
    return int(_number("ASSISTANT_REDIS_CONNECTIONS", 200, minimum=4))
