"""Kakao channel settings: Django settings of the same name, else environment variables, else defaults."""

from __future__ import annotations

from mejai.env import env_bool as _bool
from mejai.env import env_float as _float
from mejai.env import env_int as _int


def callback_deadline_seconds() -> float:
    """Kakao's callback URL lives about a minute; nothing is posted later than receipt + this."""
    return _float("KAKAO_CALLBACK_DEADLINE_SECONDS", 55.0)


def callback_settle_seconds() -> float:
    """Wait this long after the acknowledgement before posting (an earlier post can be rejected)."""
    return _float("KAKAO_CALLBACK_SETTLE_SECONDS", 1.0)


def callback_max_attempts() -> int:
    return max(1, _int("KAKAO_CALLBACK_MAX_ATTEMPTS", 3))


def callback_connect_timeout() -> float:
    return _float("KAKAO_CALLBACK_CONNECT_TIMEOUT", 2.0)


def callback_read_timeout() -> float:
    return _float("KAKAO_CALLBACK_READ_TIMEOUT", 5.0)


def callback_backoff_seconds() -> float:
    """First retry delay; doubled for each later attempt."""
    return _float("KAKAO_CALLBACK_BACKOFF_SECONDS", 0.5)


def still_working_margin_seconds() -> float:
    """When less than this remains before the deadline and the answer is not ready, the callback
    is spent on a short "still working" message (room for the post, its timeouts and one retry)."""
    return _float("KAKAO_STILL_WORKING_MARGIN_SECONDS", 12.0)


def sync_answer_seconds() -> float:
    """Budget for a synchronous answer (no callbackUrl); Kakao gives the whole call 5 s."""
    return _float("KAKAO_SYNC_ANSWER_SECONDS", 3.5)


def max_body_bytes() -> int:
    return _int("KAKAO_MAX_BODY_BYTES", 64 * 1024)


def max_utterance_chars() -> int:
    return _int("KAKAO_MAX_UTTERANCE_CHARS", 1000)


def callback_url_max_chars() -> int:
    return _int("KAKAO_CALLBACK_URL_MAX_CHARS", 1024)


def enqueue_connect_timeout() -> float:
    """How long the skill endpoint waits for the broker before answering synchronously."""
    return _float("KAKAO_ENQUEUE_CONNECT_TIMEOUT", 0.5)


def name_mode_minutes() -> int:
    return _int("KAKAO_NAME_MODE_MINUTES", 10)


def dev_tools_enabled() -> bool:
    """The skill tester page and the callback receiver (development helpers)."""
    return _bool("KAKAO_DEV_TOOLS", False)


def test_loopback_callbacks() -> bool:
    """Tests and benchmarks only: also accept http://127.0.0.1:<port> callback URLs when 127.0.0.1
    is in the bot's allowed hosts, so the fake Kakao receiver can be used. Never set in production."""
    return _bool("KAKAO_TEST_LOOPBACK_CALLBACKS", False)


def skill_max_in_flight() -> int:
    """Skill requests one process works on at once; past it a request gets the busy apology at once
    (a valid skill response, nothing stored). 0 sheds every request (tests, draining)."""
    return _int("KAKAO_SKILL_MAX_IN_FLIGHT", 64, minimum=0)


def skill_db_slots() -> int:
    """Skill requests of one process using the database at once (the rest of the pool stays free for
    other endpoints)."""
    return _int("KAKAO_SKILL_DB_SLOTS", 8, minimum=1)


def skill_queue_seconds() -> float:
    """How long a skill request waits for a database slot before it gets the busy apology. With the
    database pool's own wait (DB_POOL_TIMEOUT) it must stay well inside Kakao's 5 s."""
    return _float("KAKAO_SKILL_QUEUE_SECONDS", 1.5, minimum=0)
