"""Organization API keys: issued once in clear, stored as SHA-256, revocable; DRF authentication."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from mejai.concurrency import db_release, executor
from runtime.hotcache import cached
from runtime.models import ApiKey, Organization

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION_SECONDS = 60


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_issue(*, organization: Organization, name: str) -> tuple[ApiKey, str]:
    """Create a key; the clear key is returned this once and never stored."""
    raw = ApiKey.PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(organization=organization, name=name, key_prefix=raw[:12], key_hash=api_key_hash(raw))
    return key, raw


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


@dataclass
class OrganizationPrincipal:
    """request.user for calls made with an organization API key."""

    organization: Organization
    api_key: ApiKey | None = None
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def label(self) -> str:
        return f"api_key:{self.api_key.key_prefix}" if self.api_key else "organization"


def api_key_principal(raw: str) -> OrganizationPrincipal:
    """The organization behind a clear API key (`mj_sk_…`), for DRF and plain views alike.

    Raises rest_framework.exceptions.AuthenticationFailed (401) for an unknown or revoked key.
    A known key is served from the per-process hot cache (runtime/hotcache.py: a revoke reaches
    every process within milliseconds); the key and organization returned are shared, read-only.
    """
    key_hash = api_key_hash(raw)

    def load():
        found = ApiKey.objects.select_related("organization").filter(key_hash=key_hash).first()
        return (found.organization_id if found else None), found

    key = cached(("api_key", key_hash), load)
    if key is None:
        raise exceptions.AuthenticationFailed("Invalid API key.")
    if key.revoked_at is not None:
        raise exceptions.AuthenticationFailed("This API key has been revoked.")
    _last_used_note(key)
    return OrganizationPrincipal(key.organization, key)


# last_used_at: written at most once per LAST_USED_RESOLUTION_SECONDS per key and process, by a
# background thread, never on the request path (the admin shows it to the minute).
_last_used_written: dict[int, float] = {}
_last_used_lock = threading.Lock()


def _last_used_note(key: ApiKey) -> None:
    now = time.monotonic()
    with _last_used_lock:
        written = _last_used_written.get(key.pk)
        if written is None:
            stored = key.last_used_at
            if stored is not None and (timezone.now() - stored).total_seconds() <= LAST_USED_RESOLUTION_SECONDS:
                written = now - (timezone.now() - stored).total_seconds()
                _last_used_written[key.pk] = written
        if written is not None and now - written <= LAST_USED_RESOLUTION_SECONDS:
            return
        _last_used_written[key.pk] = now
    executor("api-key-last-used", 1, background=True).submit(_last_used_write, key.pk, timezone.now())


def _last_used_write(key_id: int, when) -> None:
    try:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=when)
    except Exception as exc:  # bookkeeping only: never worth more than a log line
        logger.warning("api key %s: last_used_at not written (%s)", key_id, exc)
    finally:
        db_release()


def api_key_last_used_flush() -> None:
    """Wait until the queued last_used_at writes are done (tests, shutdown)."""
    executor("api-key-last-used", 1, background=True).submit(lambda: None).result(timeout=30)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mj_sk_…`."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw.startswith(ApiKey.PREFIX):
            return None  # not ours: another authenticator (e.g. a staff JWT) may take it
        principal = api_key_principal(raw)
        return principal, principal.api_key

    def authenticate_header(self, request) -> str:
        return self.keyword


class HasOrganization(permissions.BasePermission):
    """Authenticated with an organization API key (or a principal carrying an organization)."""

    message = "An organization API key is required (Authorization: Bearer mj_sk_…)."

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "organization", None))


class StaffJWTAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <staff access JWT>` from /api/auth/token; the user's organization comes
    from their Membership. Widget tokens (audience "widget") are not accepted here."""

    def authenticate(self, request):
        from rest_framework_simplejwt.authentication import JWTAuthentication
        from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw or raw.startswith(ApiKey.PREFIX):
            return None
        try:
            user, token = JWTAuthentication().authenticate(request) or (None, None)
        except (InvalidToken, TokenError) as exc:
            raise exceptions.AuthenticationFailed("Invalid or expired token.") from exc
        if user is None or not user.is_active or not user.is_staff:
            raise exceptions.AuthenticationFailed("A staff account is required.")
        membership = getattr(user, "mejai_membership", None)
        if membership is None:
            raise exceptions.PermissionDenied("This staff account belongs to no organization.")
        return OrganizationPrincipal(membership.organization, None, is_staff=True), token

    def authenticate_header(self, request) -> str:
        return "Bearer"


# Operator endpoints: an organization API key or a staff JWT.
OPERATOR_AUTHENTICATION = [ApiKeyAuthentication, StaffJWTAuthentication]


def staff_token_view():
    """POST /api/auth/token: simplejwt's pair view behind the failed-login lockout (django-axes).

    Axes locks the credentials inside authenticate(), but DRF hides that from its middleware, so
    a locked-out caller would only see 401: the lock is checked first and answered 429
    `login_locked` with Retry-After, in the one error shape.
    """
    from axes.handlers.proxy import AxesProxyHandler
    from rest_framework_simplejwt.views import TokenObtainPairView

    from mejai.lockout import lockout_response

    class StaffTokenObtainView(TokenObtainPairView):
        def post(self, request, *args, **kwargs):
            data = request.data if isinstance(request.data, dict) else {}
            username = data.get("username") if isinstance(data.get("username"), str) else None
            if not AxesProxyHandler.is_allowed(request._request, {"username": username}):
                return lockout_response(request._request)
            return super().post(request, *args, **kwargs)

    return StaffTokenObtainView.as_view()
