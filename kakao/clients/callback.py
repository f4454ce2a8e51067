"""The Kakao callback HTTP client: one POST to the callbackUrl, verbatim, no redirects, bounded timeouts."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from kakao import conf

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("kakao.security")

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
    FINAL = "final"  # do not retry: FAIL, other 4xx, an unreadable 2xx
    RETRYABLE = "retryable"  # network error, 5xx, 429, Kakao ERROR


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


class CallbackAddressRefused(Exception):
    pass


def callback_address_pin(host: str, port: int) -> str:
    """The address to connect to for `host`: resolved once, every address public, the first one.

    The allowlist names hosts, but a name can point anywhere (or be re-pointed between a check and
    the connection): a private, loopback, link-local, multicast or reserved address is refused, and
    the POST goes to the address checked here (the Host header and TLS name stay the host's).
    Raises CallbackAddressRefused; socket.gaierror when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise CallbackAddressRefused(f"{host} resolves to a non-public address")
        addresses.append(address)
    if not addresses:
        raise CallbackAddressRefused(f"{host} has no address")
    addresses.sort(key=lambda a: a.version)  # IPv4 first: the common route
    return str(addresses[0])


def _pinned(url: str) -> tuple[str, dict, dict]:
    """(URL to the pinned address, extra headers, request extensions) for a callback URL."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if conf.test_loopback_callbacks() and host in ("127.0.0.1", "localhost"):
        return url, {}, {}  # the tests' fake receiver on loopback, only under the test setting
    address = callback_address_pin(host, port)
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return pinned, {"Host": parts.netloc.rsplit("@", 1)[-1]}, {"sni_hostname": host}


def callback_post(*, url: str, body: dict, timeout: float | None = None) -> CallbackResult:
    """POST the answer to the callback URL exactly as given, to its host's checked address. Never raises
    for network trouble. Error texts are generic (no errno, address or port: the task API shows them)."""
    read = conf.callback_read_timeout() if timeout is None else min(timeout, conf.callback_read_timeout())
    connect = min(conf.callback_connect_timeout(), read)
    content = json.dumps(body, ensure_ascii=False).encode()
    try:
        target, host_header, extensions = _pinned(url)
    except CallbackAddressRefused as exc:
        security_logger.warning("kakao callback refused: %s", exc)
        return CallbackResult(Outcome.FINAL, error_code="callback_address_refused",
                              error="The callback host does not resolve to a public address.", nothing_sent=True)
    except (OSError, UnicodeError, ValueError) as exc:  # no such name, resolver down
        logger.warning("kakao callback: could not resolve the callback host: %s", exc)
        return CallbackResult(Outcome.RETRYABLE, error_code="connect_error", error="Could not resolve the callback host.",
                              nothing_sent=True)
    try:
        response = _http_client().post(
            target, content=content, headers={"Content-Type": "application/json;charset=UTF-8", **host_header},
            timeout=httpx.Timeout(read, connect=connect, pool=connect), extensions=extensions,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        logger.warning("kakao callback: connect failed: %s", exc)
        return CallbackResult(Outcome.RETRYABLE, error_code="connect_error", error="Could not connect to the callback host.",
                              nothing_sent=True)
    except httpx.TimeoutException as exc:
        logger.warning("kakao callback: timed out: %s", exc)
        return CallbackResult(Outcome.RETRYABLE, error_code="timeout", error="The callback host did not answer in time.")
    except httpx.HTTPError as exc:
        logger.warning("kakao callback: network error: %s", exc)
        return CallbackResult(Outcome.RETRYABLE, error_code="network_error", error="Network error while posting the callback.")
    return _classify(response)
