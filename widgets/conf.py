"""Widget settings: environment variables (or Django settings of the same name) with defaults."""

from __future__ import annotations

from django.conf import settings

from mejai.env import env_float as _float
from mejai.env import env_int as _int


def token_ttl_seconds() -> int:
    """Lifetime of a widget token (WIDGET_TOKEN_TTL_SECONDS, default 30 minutes)."""
    return max(60, _int("WIDGET_TOKEN_TTL_SECONDS", 1800))


def stream_ticket_ttl_seconds() -> int:
    return max(5, _int("WIDGET_STREAM_TICKET_TTL_SECONDS", 60))


def max_message_chars() -> int:
    """The widget's message cap; never above the pipeline's own RUNTIME_MAX_MESSAGE_CHARS."""
    return min(_int("WIDGET_MAX_MESSAGE_CHARS", 2000), settings.RUNTIME_MAX_MESSAGE_CHARS)


def history_limit() -> int:
    return max(0, _int("WIDGET_HISTORY_LIMIT", 50))


def session_resume_days() -> int:
    """A visitor's latest conversation is resumed when it was active within this many days."""
    return max(0, _int("WIDGET_SESSION_RESUME_DAYS", 30))


def sse_keepalive_seconds() -> float:
    return _float("WIDGET_SSE_KEEPALIVE_SECONDS", settings.RUNTIME_SSE_KEEPALIVE_SECONDS)


def install_seen_resolution_seconds() -> int:
    """Install status (last seen origin/time) is written at most this often per widget."""
    return _int("WIDGET_INSTALL_SEEN_RESOLUTION_SECONDS", 60)


# Rate limits: (requests, window seconds). 0 requests disables a limit.
def rate_limit(name: str) -> tuple[int, int]:
    defaults = {
        "INIT_IP": (60, 60),  # per client address and widget key
        "CHAT_IP": (60, 60),  # per client address and widget key
        "CHAT_VISITOR": (20, 60),  # per visitor (or verified user) of a widget
        "EVENT_VISITOR": (120, 60),
        "STREAM_VISITOR": (30, 60),  # stream connections / tickets per visitor
        # Whole-widget caps, whatever the addresses: one widget cannot spend unlimited model tokens.
        "INIT_WIDGET": (1200, 60),
        "CHAT_WIDGET": (300, 60),
        "CHAT_WIDGET_DAY": (20000, 86400),
    }
    count, window = defaults[name]
    return _int(f"WIDGET_RATE_{name}", count), _int(f"WIDGET_RATE_{name}_WINDOW", window)


# Open streams (SSE + WebSocket) at once, per web process; 0 disables a cap.
def streams_per_visitor() -> int:
    return _int("WIDGET_STREAMS_PER_VISITOR", 10, minimum=0)


def streams_per_ip() -> int:
    return _int("WIDGET_STREAMS_PER_IP", 50, minimum=0)


def streams_per_widget() -> int:
    return _int("WIDGET_STREAMS_PER_WIDGET", 2000, minimum=0)
