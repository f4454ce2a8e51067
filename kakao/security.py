"""Checks on what Kakao sends: the shared-secret header and the callbackUrl (SSRF guard)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kakao import conf

# /v1/bots/<bot id, maybe ending in "!">/callback/<token>; the token is opaque but URL-safe.
_PATH = re.compile(r"^/v1/bots/([A-Za-z0-9_-]{1,64}!?)/callback/([A-Za-z0-9_\-.~=+]{1,512})$")
_SAFE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces or controls
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class CallbackUrlRejected(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallbackUrl:
    url: str  # verbatim
    host: str
    bot_id: str
    token: str

    @property
    def token_hash(self) -> str:
        return token_hash(self.token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def callback_url_check(url, *, allowed_hosts: list[str]) -> CallbackUrl:
    """The callbackUrl if it may be called; CallbackUrlRejected(reason) otherwise.

    https only, host exactly in the allowlist (no IP literals), port 443, the Kakao callback path,
    no userinfo, query or fragment, bounded length. Checked on receipt and again in the worker.
    """
    if not isinstance(url, str) or not url:
        raise CallbackUrlRejected("not_a_string")
    if len(url) > conf.callback_url_max_chars():
        raise CallbackUrlRejected("too_long")
    if not _SAFE.match(url):
        raise CallbackUrlRejected("unsafe_characters")
    if "@" in url:
        raise CallbackUrlRejected("userinfo")
    if "?" in url:
        raise CallbackUrlRejected("query")
    if "#" in url:
        raise CallbackUrlRejected("fragment")
    if "\\" in url:
        raise CallbackUrlRejected("unsafe_characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackUrlRejected("unparsable") from None
    host = (parts.hostname or "").lower()
    allowed = {str(h).strip().lower() for h in (allowed_hosts or []) if str(h).strip()}
    loopback = conf.test_loopback_callbacks() and host in LOOPBACK_HOSTS and host in allowed
    if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
        raise CallbackUrlRejected("scheme")
    if not host:
        raise CallbackUrlRejected("host")
    if _is_ip_literal(host) and not loopback:
        raise CallbackUrlRejected("ip_literal")
    if host not in allowed:
        raise CallbackUrlRejected("host_not_allowed")
    if port not in (None, 443) and not loopback:
        raise CallbackUrlRejected("port")
    if parts.username is not None or parts.password is not None:
        raise CallbackUrlRejected("userinfo")
    match = _PATH.match(parts.path)
    if not match or set(match.group(2)) <= {"."}:
        raise CallbackUrlRejected("path")
    return CallbackUrl(url=url, host=host, bot_id=match.group(1), token=match.group(2))


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of the shared-secret header."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
