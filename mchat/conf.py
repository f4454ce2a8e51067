"""Mattermost channel settings: a Django setting of the same name, else the environment, else the default
(read through mejai.env, so a value that cannot be parsed fails loudly, naming the variable)."""

from __future__ import annotations

from mejai.env import env_bool, env_float, env_int, env_str


# --- simple deployments: one bot from the environment (created or updated at worker start) ---
def bootstrap_url() -> str:
    return env_str("MCHAT_URL").rstrip("/")


def bootstrap_token() -> str:
    return env_str("MCHAT_BOT_TOKEN")


def bootstrap_verify_tls() -> bool:
    return env_bool("MCHAT_VERIFY_SSL", True)


def bootstrap_organization() -> str:
    return env_str("MCHAT_ORGANIZATION", "demo")


def bootstrap_agent() -> str:
    return env_str("MCHAT_AGENT")


def bootstrap_mention() -> str:
    return env_str("MCHAT_MENTION_NAME")


# --- the client ---
def rate_per_second() -> float:
    """One limiter for every REST call of a bot (Mattermost's own limit is per IP, shared)."""
    return env_float("MCHAT_RATE_LIMIT_PER_SECOND", 5.0, minimum=0.1)


def http_retries() -> int:
    return env_int("MCHAT_HTTP_RETRIES", 3, minimum=0)


def http_backoff_seconds() -> float:
    """First retry delay; multiplied by 2 for each later attempt (the seed's policy)."""
    return env_float("MCHAT_HTTP_BACKOFF_SECONDS", 0.5, minimum=0.0)


def http_timeout_seconds() -> float:
    return env_float("MCHAT_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.5)


# --- the worker ---
def app_ping_seconds() -> float:
    return env_float("MCHAT_APP_PING_SECONDS", 30.0, minimum=0.05)


def app_pong_timeout_seconds() -> float:
    return env_float("MCHAT_APP_PONG_TIMEOUT_SECONDS", 10.0, minimum=0.05)


def backoff_min_seconds() -> float:
    return env_float("MCHAT_BACKOFF_MIN_SECONDS", 1.0, minimum=0.0)


def backoff_max_seconds() -> float:
    return env_float("MCHAT_BACKOFF_MAX_SECONDS", 60.0, minimum=0.0)


def healthy_reset_seconds() -> float:
    """A connection up this long resets the backoff."""
    return env_float("MCHAT_HEALTHY_RESET_SECONDS", 60.0, minimum=0.0)


def poll_overlap_seconds() -> float:
    return env_float("MCHAT_POLL_OVERLAP_SECONDS", 5.0, minimum=0.0)


def channels_refresh_seconds() -> float:
    """How often polling looks for channels the bot was added to."""
    return env_float("MCHAT_CHANNELS_REFRESH_SECONDS", 30.0, minimum=0.1)


def standby_retry_seconds() -> float:
    """A standby worker tries to take the bot's lock this often."""
    return env_float("MCHAT_STANDBY_RETRY_SECONDS", 5.0, minimum=0.05)


def unhealthy_recheck_seconds() -> float:
    """After a 401 the bot waits for a new token (checked this often), no reconnect loop."""
    return env_float("MCHAT_UNHEALTHY_RECHECK_SECONDS", 10.0, minimum=0.1)


def bots_refresh_seconds() -> float:
    """How often the worker looks for bots added or re-activated in the admin."""
    return env_float("MCHAT_BOTS_REFRESH_SECONDS", 30.0, minimum=0.1)


def db_threads() -> int:
    """Threads for the worker's database calls (keep DB_POOL_MAX above this plus the answers in flight)."""
    return env_int("MCHAT_DB_THREADS", 8, minimum=1)


def heartbeat_seconds() -> float:
    return env_float("MCHAT_HEARTBEAT_SECONDS", 5.0, minimum=0.1)


def heartbeat_stale_seconds() -> float:
    """/mchat/health calls a worker dead when its heartbeat is older than this."""
    return env_float("MCHAT_HEARTBEAT_STALE_SECONDS", 30.0, minimum=1.0)


def ws_open_timeout_seconds() -> float:
    return env_float("MCHAT_WS_OPEN_TIMEOUT_SECONDS", 10.0, minimum=0.1)


def resume_hello_wait_seconds() -> float:
    """After a resume the server sends no hello; a new hello, if any, comes at once."""
    return env_float("MCHAT_RESUME_HELLO_WAIT_SECONDS", 0.5, minimum=0.0)


# --- replies ---
def edit_interval_seconds() -> float:
    return env_float("MCHAT_EDIT_INTERVAL_SECONDS", 1.0, minimum=0.0)


def edit_min_chars() -> int:
    """An edit is sent only when at least this much new text arrived (or the answer finished)."""
    return env_int("MCHAT_EDIT_MIN_CHARS", 20, minimum=1)


def look_before_repost_seconds() -> float:
    """Mattermost de-duplicates pending_post_id for ~30 s; later, look for our post before posting again."""
    return env_float("MCHAT_LOOK_BEFORE_REPOST_SECONDS", 30.0, minimum=0.0)


def outbox_retry_max_seconds() -> float:
    return env_float("MCHAT_OUTBOX_RETRY_MAX_SECONDS", 30.0, minimum=0.1)


def thread_context_posts() -> int:
    return env_int("MCHAT_THREAD_CONTEXT_POSTS", 30, minimum=0)


# --- slash commands ---
def slash_sync_seconds() -> float:
    """How long POST /mchat/commands waits for the answer before acknowledging (Mattermost waits up to 30 s)."""
    return env_float("MCHAT_SLASH_SYNC_SECONDS", 2.5, minimum=0.0)


def slash_max_body_bytes() -> int:
    return env_int("MCHAT_SLASH_MAX_BODY_BYTES", 16 * 1024, minimum=1024)
