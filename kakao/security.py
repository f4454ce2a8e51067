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


# Headers every request may carry for its own reasons: a bot's secret in one of them would match
# (or be sent by) requests that never meant to authenticate, so none can be a secret header.
STANDARD_HEADERS = frozenset(h.lower() for h in (
    "Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Cache-Control", "Connection",
    "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date", "Expect", "Forwarded", "From", "Host",
    "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive",
    "Max-Forwards", "Origin", "Pragma", "Priority", "Proxy-Authorization", "Range", "Referer", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "User-Agent", "Via", "Warning", "X-Forwarded-For", "X-Forwarded-Host",
    "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-IP", "X-Request-Id", "Sec-Fetch-Mode", "Sec-Fetch-Site",
    "Sec-Fetch-Dest", "Sec-Ch-Ua", "Upgrade-Insecure-Requests", "DNT",
))
_HEADER_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


def secret_header_name_problem(name: str) -> str | None:
    """Why `name` cannot carry a bot's secret (a standard header, not a header token), or None."""
    name = (name or "").strip()
    if not _HEADER_TOKEN.match(name):
        return "헤더 이름은 영문·숫자·- 로 64자까지입니다. (A header name is letters, digits and '-', up to 64.)"
    if name.lower() in STANDARD_HEADERS or name.lower().startswith(("sec-", "proxy-")):
        return (f"'{name}'은(는) 표준 헤더라 비밀 헤더로 쓸 수 없습니다. X-로 시작하는 이름을 쓰세요. "
                f"('{name}' is a standard header and cannot carry the secret: use a name such as X-Mejai-Skill-Secret.)")
    return None


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of the shared-secret header."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
