"""The Kakao callback HTTP client: one POST to the callbackUrl, verbatim, no redirects, bounded timeouts."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import httpx

from kakao import conf

# FAIL messages Kakao documents as final: retrying cannot help.
KNOWN_FAIL_MESSAGES = (
    "invalid callback token",
    "expired",
    "for testing purposes",
    "callback is not enabled",
    "not enabled",
    "invalid bot id",
    "invalid json",
)


class Outcome:
    DELIVERED = "delivered"  # HTTP 2xx and SUCCESS
    FINAL = "final"  # do not retry: FAIL, other 4xx, an unreadable 2xx, an unknown outcome
    RETRYABLE = "retryable"  # connect error (nothing sent), 5xx, 429, Kakao ERROR


@dataclass
class CallbackResult:
    outcome: str
    http_status: int | None = None
    kakao_status: str = ""
    kakao_message: str = ""
    kakao_task_id: str = ""
    error_code: str = ""
    error: str = ""
    nothing_sent: bool = False  # the connection was never made: the token is certainly unused


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http_client() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                follow_redirects=False,
                trust_env=False,  # no proxies from the environment for a token-bearing URL
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=30),
                headers={"User-Agent": "mejai-kakao-callback/1"},
            )
        return _client


def _classify(response: httpx.Response) -> CallbackResult:
    status = response.status_code
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = None
    kakao_status = str((data or {}).get("status") or "")[:16]
    message = str((data or {}).get("message") or "")[:500]
    task_id = str((data or {}).get("taskId") or "")[:100]
    base = dict(http_status=status, kakao_status=kakao_status, kakao_message=message, kakao_task_id=task_id)
    if status == 429 or status >= 500:
        return CallbackResult(Outcome.RETRYABLE, error_code=f"http_{status}", error=f"HTTP {status}", **base)
    if status >= 300:
        # Redirects are never followed; other 4xx will not change on a retry.
        return CallbackResult(Outcome.FINAL, error_code=f"http_{status}", error=f"HTTP {status}", **base)
    if data is None:
        return CallbackResult(Outcome.FINAL, error_code="non_json_response",
                              error=f"Kakao answered HTTP {status} without a JSON status.", **base)
    if kakao_status == "SUCCESS":
        return CallbackResult(Outcome.DELIVERED, **base)
    if kakao_status == "ERROR":
        return CallbackResult(Outcome.RETRYABLE, error_code="kakao_error", error=message or "Kakao ERROR", **base)
    if kakao_status == "FAIL":
        known = any(fragment in message.lower() for fragment in KNOWN_FAIL_MESSAGES)
        return CallbackResult(Outcome.FINAL, error_code="kakao_fail" if known else "kakao_fail_unknown",
                              error=message or "Kakao FAIL", **base)
    return CallbackResult(Outcome.FINAL, error_code="unexpected_status",
                          error=f"Unexpected callback status {kakao_status!r}.", **base)


def callback_post(*, url: str, body: dict, timeout: float | None = None) -> CallbackResult:
    """POST the answer to the callback URL exactly as given. Never raises for network trouble."""
    read = conf.callback_read_timeout() if timeout is None else min(timeout, conf.callback_read_timeout())
    connect = min(conf.callback_connect_timeout(), read)
    content = json.dumps(body, ensure_ascii=False).encode()
    try:
        response = _http_client().post(
            url, content=content, headers={"Content-Type": "application/json;charset=UTF-8"},
            timeout=httpx.Timeout(read, connect=connect, pool=connect),
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return CallbackResult(Outcome.RETRYABLE, error_code="connect_error", error=f"{type(exc).__name__}: {exc}"[:500],
                              nothing_sent=True)
    except httpx.HTTPError as exc:
        # The connection was made and the request (or part of it) went out, but no answer came back:
        # a read/write timeout, a dropped connection. Kakao may have delivered it, so by the exactly-once
        # rule it is final, like a 2xx we cannot read; only failures known to precede delivery retry.
        return CallbackResult(Outcome.FINAL, error_code="outcome_unknown",
                              error=f"No answer after the request was sent ({type(exc).__name__}: {exc}); "
                              "not posted again to avoid a duplicate answer."[:500])
    return _classify(response)
