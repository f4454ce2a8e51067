"""A thin Mattermost API v4 client of our own (httpx + websockets): one rate limiter per bot, retries of
429/5xx/network errors with backoff, a typed error for everything else. The token is never logged."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from urllib.parse import urlencode

import httpx

logger = logging.getLogger(__name__)

EDIT_TIME_LIMIT = "api.post.update_post.permissions_time_limit.app_error"
PENDING_IN_FLIGHT = "api.post.deduplicate_create_post.pending"


class MattermostError(Exception):
    """An answer Mattermost gave (status, its error id) or a network failure (status 0)."""

    def __init__(self, status: int, error_id: str = "", message: str = "", *, retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(f"{status} {error_id} {message}".strip())
        self.status = status
        self.error_id = error_id
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class Unauthorized(MattermostError):
    """401: the token is bad or revoked. The bot stops and reports unhealthy."""


class RateLimiter:
    """A token bucket (rate/s, burst = rate) that also obeys the server: X-RateLimit-Remaining 0 or a 429
    blocks every call until the reset."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.blocked_until = 0.0
        self._lock = asyncio.Lock()
        self.waited = 0.0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self.blocked_until:
                    delay = self.blocked_until - now
                else:
                    self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
                    self.at = now
                    if self.tokens >= 1.0:
                        self.tokens -= 1.0
                        return
                    delay = (1.0 - self.tokens) / self.rate
                self.waited += delay
                await asyncio.sleep(delay)

    def block_for(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + max(0.0, seconds))

    def observe(self, headers) -> None:
        remaining, reset = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset")
        if remaining is None or reset is None:
            return
        try:
            if int(remaining) <= 0:
                self.block_for(float(reset))  # seconds from now (not an epoch)
        except ValueError:
            pass


def _error_from(response: httpx.Response) -> MattermostError:
    status = response.status_code
    retry_after = None
    if status == 429:
        try:
            retry_after = float(response.headers.get("Retry-After") or response.headers.get("X-RateLimit-Reset") or 1)
        except ValueError:
            retry_after = 1.0
        return MattermostError(429, "rate_limited", "limit exceeded", retryable=True, retry_after=retry_after)
    try:
        body = response.json()
        error_id, message = str(body.get("id", "")), str(body.get("message", ""))[:200]
    except (ValueError, AttributeError):
        error_id, message = "", response.text[:200]
    cls = Unauthorized if status == 401 else MattermostError
    # A duplicate create still in flight is a 500 that is safe to retry with the same pending_post_id.
    return cls(status, error_id, message, retryable=status >= 500)


class MattermostClient:
    """REST calls of one bot. `calls` counts requests sent (the bench's REST calls per mention)."""

    def __init__(self, *, base_url: str, token: str, verify_tls: bool = True, ca_bundle_path: str = "",
                 rate_per_second: float = 5.0, retries: int = 3, backoff_seconds: float = 0.5,
                 timeout_seconds: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.limiter = RateLimiter(rate_per_second)
        self.ssl_context = self._ssl_context(verify_tls, ca_bundle_path) if self.base_url.startswith("https") else None
        self.http = httpx.AsyncClient(
            base_url=self.base_url + "/api/v4", headers={"Authorization": f"Bearer {token}"},
            verify=self.ssl_context if self.ssl_context is not None else verify_tls,
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)), follow_redirects=False,
        )
        self.calls = 0

    def __repr__(self) -> str:
        return f"<MattermostClient {self.base_url}>"

    @staticmethod
    def _ssl_context(verify: bool, ca_bundle_path: str) -> ssl.SSLContext:
        if not verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=ca_bundle_path or None)

    @property
    def auth_header(self) -> dict:
        return {"Authorization": f"Bearer {self._token}"}

    def websocket_url(self, *, connection_id: str = "", sequence_number: int | None = None) -> str:
        url = ("wss" + self.base_url[5:] if self.base_url.startswith("https") else "ws" + self.base_url[4:])
        url += "/api/v4/websocket"
        if connection_id and sequence_number is not None:
            url += "?" + urlencode({"connection_id": connection_id, "sequence_number": sequence_number})
        return url

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, json=None, params=None, retries: int | None = None):
        """One REST call with retries of 429 (after Retry-After), 5xx and network errors, backoff ×2.
        Returns the decoded JSON; raises Unauthorized on 401, MattermostError otherwise."""
        retries = self.retries if retries is None else retries
        last: MattermostError | None = None
        for attempt in range(retries + 1):
            await self.limiter.acquire()
            self.calls += 1
            try:
                response = await self.http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                last = MattermostError(0, "network", type(exc).__name__, retryable=True)
            else:
                self.limiter.observe(response.headers)
                if response.status_code < 400:
                    if not response.content:
                        return None
                    try:
                        return response.json()
                    except ValueError:
                        raise MattermostError(response.status_code, "bad_json", "not JSON") from None
                last = _error_from(response)
                if last.status == 429:
                    self.limiter.block_for(last.retry_after or 1.0)
                if not last.retryable:
                    raise last
            if attempt == retries:
                break
            delay = last.retry_after if last.retry_after is not None else self.backoff_seconds * (2 ** attempt)
            await asyncio.sleep(delay * (1 if last.retry_after is not None else random.uniform(0.8, 1.2)))
        raise last

    # --- the calls the worker makes ------------------------------------------------------------
    async def me(self) -> dict:
        return await self.request("GET", "/users/me", retries=1)

    async def user(self, user_id: str) -> dict:
        return await self.request("GET", f"/users/{user_id}")

    async def teams(self) -> list[dict]:
        return await self.request("GET", "/users/me/teams") or []

    async def team_channels(self, team_id: str) -> list[dict]:
        return await self.request("GET", f"/users/me/teams/{team_id}/channels") or []

    async def channel(self, channel_id: str) -> dict:
        return await self.request("GET", f"/channels/{channel_id}")

    async def channel_posts_since(self, channel_id: str, since_ms: int) -> list[dict]:
        """Posts created or modified since `since_ms`, oldest first (the server answers newest first)."""
        body = await self.request("GET", f"/channels/{channel_id}/posts", params={"since": int(since_ms)}) or {}
        posts = body.get("posts") or {}
        unique = {pid: posts[pid] for pid in (body.get("order") or []) if pid in posts}
        return sorted(unique.values(), key=lambda p: (p.get("create_at", 0), p.get("id", "")))

    async def thread(self, post_id: str) -> list[dict]:
        """The thread's posts, de-duplicated and sorted by create_at (the server's order may repeat and mix)."""
        body = await self.request("GET", f"/posts/{post_id}/thread") or {}
        posts = body.get("posts") or {}
        unique = {pid: posts[pid] for pid in (body.get("order") or []) if pid in posts}
        return sorted(unique.values(), key=lambda p: (p.get("create_at", 0), p.get("id", "")))

    async def post_create(self, *, channel_id: str, message: str, root_id: str = "", props: dict | None = None,
                          pending_post_id: str = "", retries: int | None = None) -> dict:
        body = {"channel_id": channel_id, "message": message, "root_id": root_id, "props": props or {}}
        if pending_post_id:
            body["pending_post_id"] = pending_post_id
        return await self.request("POST", "/posts", json=body, retries=retries)

    async def post_patch(self, post_id: str, *, message: str, props: dict, retries: int | None = None) -> dict:
        """Edit a post; `props` replaces the post's props entirely, so send all of them every time."""
        return await self.request("PUT", f"/posts/{post_id}/patch", json={"message": message, "props": props},
                                  retries=retries)

    async def direct_channel(self, *, user_id: str, other_user_id: str) -> dict:
        return await self.request("POST", "/channels/direct", json=[user_id, other_user_id])

    async def typing(self, *, user_id: str, channel_id: str, parent_id: str = "") -> None:
        await self.request("POST", f"/users/{user_id}/typing", json={"channel_id": channel_id, "parent_id": parent_id},
                           retries=0)
