"""Widget services: where a widget may run, init (identity, session, token), chat, streams, events, stats.

Allowed-domain patterns (docs/widgets-api.md):
    example.com              that host, http or https, any port
    *.example.com            any subdomain (a.example.com, a.b.example.com), not example.com itself
    example.com:8443         that host on that port only
    localhost:*              any port (same as no port)
    https://example.com      that scheme only
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import posixpath
import re
import secrets
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import idna
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from mejai.errors import ApiError
from runtime.models import Channel, Session, Turn
from widgets import conf
from widgets.models import (
    ChatWidget,
    WidgetDailyStat,
    WidgetEvent,
    identity_secret_generate,
    public_key_generate,
)

logger = logging.getLogger(__name__)

# --- allowed domains and paths ------------------------------------------------------------
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
DEFAULT_PORTS = {"http": 80, "https": 443}


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class DomainPattern:
    scheme: str | None  # None: http or https
    host: str  # lower-case, punycode; without the "*." of a wildcard
    wildcard: bool
    port: int | None  # None: any port

    def matches(self, origin: Origin) -> bool:
        if self.scheme is not None and origin.scheme != self.scheme:
            return False
        if self.port is not None and origin.port != self.port:
            return False
        if self.wildcard:
            # A label boundary: "evil-example.com" and "example.com.evil.com" do not end in ".example.com".
            return origin.host.endswith("." + self.host)
        return origin.host == self.host

    def csp_sources(self) -> list[str]:
        host = ("*." if self.wildcard else "") + self.host
        port = f":{self.port}" if self.port is not None else ":*"
        schemes = [self.scheme] if self.scheme else ["https", "http"]
        return [f"{scheme}://{host}{port}" for scheme in schemes]

    def __str__(self) -> str:
        text = ("*." if self.wildcard else "") + self.host
        if self.port is not None:
            text += f":{self.port}"
        return f"{self.scheme}://{text}" if self.scheme else text


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")


def host_normalize(host: str) -> str:
    """Lower-case, no trailing dot, IDN as punycode; PatternError when not a host name or IP."""
    host = host.strip().rstrip(".").lower()
    if not host:
        raise PatternError("empty host")
    if _IPV6.match(host):
        return host
    try:
        # UTS-46 non-transitional, as browsers do: "faß.de" is its own domain, not "fass.de"
        # (Python's "idna" codec is IDNA 2003 and folds ß to ss).
        host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (UnicodeError, idna.IDNAError) as exc:
        raise PatternError(f"invalid host: {host!r}") from exc
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise PatternError(f"invalid host: {host!r}")
    return host


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise PatternError("unclosed IPv6 address")
        host, rest = text[: end + 1], text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise PatternError("invalid port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            return host, None
    if port_text == "*":
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PatternError(f"invalid port: {port_text!r}")
    return host, int(port_text)


def pattern_parse(text: str) -> DomainPattern:
    raw = (text or "").strip()
    if not raw:
        raise PatternError("empty pattern")
    if len(raw) > 255:
        raise PatternError("pattern too long")
    scheme = None
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        scheme = scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise PatternError("only http and https origins can embed the widget")
    raw = raw.rstrip("/")
    if "/" in raw or "@" in raw or "?" in raw or "#" in raw:
        raise PatternError("a domain pattern has no path, user or query; use allowed paths for paths")
    hostport, port = _split_port(raw)
    wildcard = hostport.startswith("*.")
    if wildcard:
        hostport = hostport[2:]
    if "*" in hostport:
        raise PatternError("a wildcard is only allowed as the first label: *.example.com")
    host = host_normalize(hostport)
    if wildcard and "." not in host:
        raise PatternError("a wildcard needs a registrable domain: *.example.com, not *.com")
    return DomainPattern(scheme=scheme, host=host, wildcard=wildcard, port=port)


def patterns_parse(values) -> list[DomainPattern]:
    """The valid patterns of a stored list (invalid entries are skipped; the admin form refuses them)."""
    patterns = []
    for value in values or []:
        if isinstance(value, str):
            try:
                patterns.append(pattern_parse(value))
            except PatternError:
                continue
    return patterns


def origin_parse(value: str | None) -> Origin | None:
    """An http(s) origin (from an Origin header or any URL); None when absent, opaque or invalid."""
    value = (value or "").strip()
    if not value or value == "null" or len(value) > 2048:
        return None
    try:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        port = parts.port or DEFAULT_PORTS[scheme]
        hostname = parts.hostname
        host = f"[{hostname}]" if ":" in hostname else host_normalize(hostname)
    except (ValueError, PatternError):
        return None
    return Origin(scheme=scheme, host=host, port=port)


def origin_allowed(*, origin: Origin, patterns: list[DomainPattern]) -> bool:
    return any(pattern.matches(origin) for pattern in patterns)


def path_normalize(path: str) -> str:
    path = unquote(path or "/")
    normalized = posixpath.normpath("/" + path.lstrip("/"))
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    return normalized if normalized != "." else "/"


def path_prefix_valid(prefix: str) -> str:
    prefix = (prefix or "").strip()
    if not prefix.startswith("/") or len(prefix) > 200 or any(c in prefix for c in "?#* \t\n"):
        raise PatternError("a path prefix starts with / and has no query, fragment, space or wildcard")
    return prefix


def path_allowed(*, path: str, prefixes) -> bool:
    """Prefixes match at a segment boundary: /shop allows /shop and /shop/x, not /shopping."""
    prefixes = [p.strip() for p in prefixes or [] if isinstance(p, str) and p.strip()]
    if not prefixes:
        return True
    path = path_normalize(path)
    for prefix in prefixes:
        base = path_normalize(prefix)
        if base == "/":
            return True
        if path == base or path.startswith(base.rstrip("/") + "/"):
            return True
    return False


def allowed_domains_clean(values) -> list[str]:
    """Normalized patterns, or django ValidationError naming the first bad one (admin form, services)."""
    if not isinstance(values, (list, tuple)):
        raise ValidationError("A list of domain patterns is required.")
    cleaned: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValidationError("Each domain pattern must be text.")
        if not value.strip():
            continue
        try:
            text = str(pattern_parse(value))
        except PatternError as exc:
            raise ValidationError(f"{value!r}: {exc}") from exc
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def allowed_paths_clean(values) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise ValidationError("A list of path prefixes is required.")
    cleaned: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValidationError("Each path prefix must be text.")
        if not value.strip():
            continue
        try:
            text = path_prefix_valid(value)
        except PatternError as exc:
            raise ValidationError(f"{value!r}: {exc}") from exc
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def widget_frame_ancestors(widget: ChatWidget) -> str:
    """The whole value of the embed page's Content-Security-Policy header.

    `frame-ancestors 'self' <sources>`: 'self' lets mejai's own pages (quickstart preview) frame
    it; each allowed domain gives explicit https and http sources (any port unless one is set).
    Patterns are re-parsed, so nothing but host-source syntax can reach the header.
    """
    sources = ["'self'"]
    for pattern in patterns_parse(widget.allowed_domains):
        for source in pattern.csp_sources():
            if source not in sources:
                sources.append(source)
    return "frame-ancestors " + " ".join(sources)


@dataclass(frozen=True)
class OriginCheck:
    origin: str  # the calling page's origin, e.g. "https://shop.example.com"
    page_url: str
    preview: bool  # mejai's own origin (quickstart live preview): no install status, no stats


def widget_origin_check(
    *, widget: ChatWidget, origin_header: str | None, referer_header: str | None, page_url: str | None,
    own_origins: tuple[str, ...] = (),
) -> OriginCheck:
    """Check the calling page against the widget's allowlist; ApiError 403 when it may not run there.

    The Origin header decides (falling back to Referer); the page_url from the body only supplies
    the path, and must be on that same origin.
    """
    origin = origin_parse(origin_header) if origin_header and origin_header != "null" else None
    if origin is None:
        origin = origin_parse(referer_header)
    if origin is None:
        raise ApiError(
            "origin_not_allowed",
            "이 위젯을 불러온 페이지의 출처를 알 수 없습니다. (The page's origin is missing.)",
            403,
        )
    origin_text = str(origin)
    page = (page_url or "").strip()[:2000]
    page_origin = origin_parse(page) if page else None
    if page and page_origin is None:
        raise ApiError("invalid", "page_url must be an http(s) URL.", 400, field="page_url")
    if page_origin is not None and page_origin != origin:
        raise ApiError(
            "origin_not_allowed",
            "page_url이 요청한 페이지의 출처와 다릅니다. (page_url is not on the calling origin.)",
            403,
        )
    own = {str(o) for o in (origin_parse(value) for value in own_origins) if o is not None}
    if origin_text in own:
        return OriginCheck(origin=origin_text, page_url=page, preview=True)
    if not origin_allowed(origin=origin, patterns=patterns_parse(widget.allowed_domains)):
        raise ApiError(
            "origin_not_allowed",
            f"이 사이트({origin_text})에서는 위젯을 사용할 수 없습니다. 허용 도메인을 확인해 주세요. "
            f"(The widget is not allowed on {origin_text}.)",
            403,
        )
    if widget.allowed_paths:
        path = urlsplit(page).path if page else None
        if path is None:
            referer_origin = origin_parse(referer_header)
            path = urlsplit(referer_header).path if referer_origin == origin else None
        if path is None or not path_allowed(path=path, prefixes=widget.allowed_paths):
            raise ApiError(
                "path_not_allowed",
                "이 페이지에서는 위젯을 사용할 수 없습니다. (The widget is not allowed on this page.)",
                403,
            )
    return OriginCheck(origin=origin_text, page_url=page, preview=False)


def widget_cors_origin_known(*, origin_header: str | None) -> str | None:
    """For CORS preflights (which carry no key): the origin when some active widget allows it."""
    from django.core.cache import cache

    origin = origin_parse(origin_header)
    if origin is None:
        return None
    from widgets.models import CORS_PATTERNS_CACHE_KEY

    patterns = cache.get(CORS_PATTERNS_CACHE_KEY)
    if patterns is None:
        patterns = []
        for values in ChatWidget.objects.filter(is_active=True).values_list("allowed_domains", flat=True):
            patterns.extend(str(p) for p in patterns_parse(values))
        cache.set(CORS_PATTERNS_CACHE_KEY, patterns, 60)
    parsed = patterns_parse(patterns)
    return str(origin) if origin_allowed(origin=origin, patterns=parsed) else None


# --- widgets ------------------------------------------------------------------------------

WIDGET_NOT_FOUND = ("widget_not_found", "위젯을 찾을 수 없습니다. (Widget not found.)", 404)


def widget_get_active(*, public_key) -> ChatWidget:
    """The active widget of a public key; 404 widget_not_found for an unknown or inactive key alike."""
    if not isinstance(public_key, str) or not public_key.startswith("mw_pk_") or len(public_key) > 40:
        raise ApiError(*WIDGET_NOT_FOUND, field="public_key")
    widget = (
        ChatWidget.objects.select_related("organization", "agent")
        .filter(public_key=public_key, is_active=True)
        .first()
    )
    if widget is None:
        raise ApiError(*WIDGET_NOT_FOUND, field="public_key")
    return widget


def widget_create(
    *, organization, agent, name: str, allowed_domains, allowed_paths=(), theme: dict | None = None,
    locale: str = "ko", require_verified_identity: bool = False,
) -> ChatWidget:
    widget = ChatWidget(
        organization=organization, agent=agent, name=name, allowed_domains=allowed_domains_clean(list(allowed_domains)),
        allowed_paths=allowed_paths_clean(list(allowed_paths)), theme=theme or {}, locale=locale,
        require_verified_identity=require_verified_identity,
    )
    widget.full_clean(exclude=["public_key", "identity_secret"])
    widget.save()
    return widget


def widget_token_current(*, widget: ChatWidget, claims) -> bool:
    """Was the token issued under the widget's current public key? A rotation cuts its tokens off at once."""
    from widgets.tokens import public_key_fingerprint

    return hmac.compare_digest(claims.key_fingerprint, public_key_fingerprint(widget.public_key))


def widget_revocation_group(widget_id: int) -> str:
    """The channel-layer group of a widget's open sockets: told when it is deactivated or its key rotates."""
    return f"widget-{int(widget_id)}-changes"


def widget_changed_notify(*, widget: ChatWidget) -> None:
    """Tell the widget's open sockets its state (after commit); they close if it no longer admits them."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from widgets.tokens import public_key_fingerprint

    message = {"type": "widget.changed", "widget_id": widget.pk, "is_active": bool(widget.is_active),
               "key": public_key_fingerprint(widget.public_key)}

    def send():
        layer = get_channel_layer()
        if layer is not None:
            try:
                async_to_sync(layer.group_send)(widget_revocation_group(widget.pk), message)
            except Exception:  # the sockets re-check on their own; a layer hiccup must not fail the save
                logger.warning("widget %s: could not notify open sockets", widget.pk, exc_info=True)

    transaction.on_commit(send)


def widget_public_key_rotate(*, widget: ChatWidget) -> ChatWidget:
    """A new public key: the old snippet stops working, and tokens issued under the old key at once."""
    widget.public_key = public_key_generate()
    widget.key_rotated_at = timezone.now()
    widget.save(update_fields=["public_key", "key_rotated_at", "updated_at"])
    return widget


def widget_identity_secret_rotate(*, widget: ChatWidget) -> ChatWidget:
    """A new identity secret: hashes made with the old one stop verifying at once."""
    widget.identity_secret = identity_secret_generate()
    widget.secret_rotated_at = timezone.now()
    widget.save(update_fields=["identity_secret", "secret_rotated_at", "updated_at"])
    return widget


def identity_hash_make(*, secret: str, user_id: str) -> str:
    """What the customer's server computes: hex HMAC-SHA256(identity secret, user id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_hash_verify(*, widget: ChatWidget, user_id: str, provided: str) -> bool:
    """Constant-time comparison of the provided hash with the expected one."""
    if not isinstance(provided, str) or not user_id:
        return False
    expected = identity_hash_make(secret=widget.identity_secret, user_id=user_id)
    return hmac.compare_digest(expected.encode(), provided.strip().lower().encode("utf-8", "replace"))


def widget_config(widget: ChatWidget) -> dict:
    return {"name": widget.name, "locale": widget.locale, "theme": widget.theme_resolved}


# --- stats and install status ---------------------------------------------------------------

def stat_increment(*, widget_id: int, **counts: int) -> None:
    """Add to today's counters of a widget (one UPDATE; the row is created on first use)."""
    counts = {name: n for name, n in counts.items() if n and name in WidgetDailyStat.COUNTERS}
    if not counts:
        return
    day = timezone.localdate()
    shard = secrets.randbelow(WidgetDailyStat.SHARDS)
    updates = {name: F(name) + n for name, n in counts.items()}
    rows = WidgetDailyStat.objects.filter(widget_id=widget_id, day=day, shard=shard)
    if rows.update(**updates):
        return
    try:
        with transaction.atomic():
            WidgetDailyStat.objects.create(widget_id=widget_id, day=day, shard=shard, **counts)
    except IntegrityError:
        rows.update(**updates)


def install_seen(*, widget: ChatWidget, origin: str, page_url: str) -> None:
    """Record where the widget runs; at most one write per resolution period and origin."""
    now = timezone.now()
    resolution = conf.install_seen_resolution_seconds()
    if (
        widget.last_seen_at is not None
        and widget.last_seen_origin == origin
        and (now - widget.last_seen_at).total_seconds() < resolution
    ):
        return
    ChatWidget.objects.filter(pk=widget.pk).update(
        last_seen_origin=origin[:255], last_seen_page_url=page_url[:500], last_seen_at=now
    )
    ChatWidget.objects.filter(pk=widget.pk, first_seen_at__isnull=True).update(
        first_seen_origin=origin[:255], first_seen_at=now
    )
    widget.last_seen_origin, widget.last_seen_at, widget.last_seen_page_url = origin[:255], now, page_url[:500]
    if widget.first_seen_at is None:
        widget.first_seen_origin, widget.first_seen_at = origin[:255], now


# --- init: identity, session, token ---------------------------------------------------------

_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def visitor_id_clean(value) -> str:
    """The visitor id from the host page, or a new one when none was sent."""
    if value in (None, ""):
        return "v_" + secrets.token_urlsafe(18)
    if not isinstance(value, str) or not _VISITOR_ID.match(value):
        raise ApiError("invalid", "visitor.id must be 8–64 letters, digits, - or _.", 400, field="visitor.id")
    return value


@dataclass
class InitResult:
    widget: ChatWidget
    token: str
    expires_at: object
    session: Session
    visitor_id: str
    end_user: object
    verified: bool
    history: list[dict] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict:
        return {
            "widget_token": self.token,
            "token_expires_at": self.expires_at.isoformat(),
            "session_id": str(self.session.pk),
            "visitor_id": self.visitor_id,
            "end_user_verified": self.verified,
            "resumed": self.resumed,
            "widget_config": widget_config(self.widget),
            "history": self.history,
        }


def _claims_record(*, end_user, visitor: dict) -> None:
    """Name, email and phone the host page passed: unverified claims on the person's own end user."""
    from endusers.services import identity_claim, profile_name_set

    for kind in ("email", "phone"):
        value = visitor.get(kind)
        if isinstance(value, str) and value.strip():
            try:
                identity_claim(end_user=end_user, kind=kind, value=value[:255])
            except (ApiError, ValidationError, ValueError):
                logger.info("widget init: ignored an invalid %s claim", kind)
    name = visitor.get("name")
    if isinstance(name, str) and name.strip() and not end_user.display_name:
        try:
            profile_name_set(end_user=end_user, name=name[:100])
        except (ApiError, ValidationError, ValueError):
            pass


def _end_user_resolve(*, widget: ChatWidget, visitor_id: str, visitor: dict):
    """(end user, verified). A signed user id is the customer's user; otherwise the random visitor."""
    from endusers.services import identity_resolve

    user_id = visitor.get("user_id")
    user_id = str(user_id).strip() if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) else ""
    provided = visitor.get("hash")
    verified = bool(user_id and provided and identity_hash_verify(widget=widget, user_id=user_id, provided=provided))
    if not verified and widget.require_verified_identity:
        if user_id and provided:
            raise ApiError(
                "identity_hash_invalid",
                "사용자 확인에 실패했습니다. (The identity hash does not match the user id.)",
                401,
                field="visitor.hash",
            )
        raise ApiError(
            "identity_required",
            "이 위젯은 로그인한 사용자만 사용할 수 있습니다. (This widget requires a verified user.)",
            401,
            field="visitor.user_id",
        )
    if len(user_id) > 200:
        raise ApiError("invalid", "visitor.user_id is limited to 200 characters.", 400, field="visitor.user_id")
    name = visitor.get("name") if isinstance(visitor.get("name"), str) else ""
    if verified:
        end_user = identity_resolve(
            organization=widget.organization, kind="external_id", value=user_id, verified=True, display_name=name or ""
        )
    else:
        # An unsigned user id is never used to find anyone: it could be anybody's.
        end_user = identity_resolve(
            organization=widget.organization, kind="visitor", value=visitor_id, verified=False, display_name=name or ""
        )
    _claims_record(end_user=end_user, visitor=visitor)
    return end_user, verified


def _sessions_of(*, widget: ChatWidget, end_user, visitor_id: str, verified: bool):
    sessions = Session.objects.filter(
        organization_id=widget.organization_id, channel=Channel.WEB_WIDGET, metadata__widget_id=widget.pk,
        end_user=end_user,
    )
    if not verified:
        sessions = sessions.filter(metadata__visitor_id=visitor_id)
    return sessions


def session_history(*, session: Session, limit: int | None = None) -> list[dict]:
    """The session's recent messages, oldest first: user and assistant text, as text."""
    limit = conf.history_limit() if limit is None else limit
    if limit <= 0:
        return []
    turns = list(
        Turn.objects.filter(session=session).order_by("-seq").only(
            "id", "seq", "user_text", "reply_text", "status", "created_at", "completed_at"
        )[:limit]
    )
    messages: list[dict] = []
    for turn in reversed(turns):
        messages.append({"role": "user", "text": turn.user_text, "turn_id": str(turn.id),
                         "created_at": turn.created_at.isoformat()})
        if turn.reply_text and turn.status in (Turn.Status.COMPLETED, Turn.Status.INTERRUPTED):
            messages.append({"role": "assistant", "text": turn.reply_text, "turn_id": str(turn.id),
                             "created_at": (turn.completed_at or turn.created_at).isoformat()})
    return messages[-limit:]


def widget_init(
    *, widget: ChatWidget, check: OriginCheck, visitor: dict | None, referrer: str = "", locale: str = "",
    session_id=None,
) -> InitResult:
    """Identify the visitor, create or resume their conversation, and issue a widget token."""
    visitor = visitor if isinstance(visitor, dict) else {}
    visitor_id = visitor_id_clean(visitor.get("id"))
    # One transaction (one commit) for the identity, the session and the counters.
    with transaction.atomic():
        return _widget_init(widget=widget, check=check, visitor=visitor, visitor_id=visitor_id, referrer=referrer,
                            locale=locale, session_id=session_id)


def _widget_init(*, widget, check, visitor, visitor_id, referrer, locale, session_id) -> InitResult:
    from runtime.services import session_create
    from widgets.tokens import widget_token_issue

    end_user, verified = _end_user_resolve(widget=widget, visitor_id=visitor_id, visitor=visitor)

    sessions = _sessions_of(widget=widget, end_user=end_user, visitor_id=visitor_id, verified=verified).filter(
        status=Session.Status.OPEN
    )
    session = None
    if session_id:
        try:
            session = sessions.filter(pk=uuid.UUID(str(session_id))).first()
        except (TypeError, ValueError):
            session = None
    if session is None:
        since = timezone.now() - timezone.timedelta(days=conf.session_resume_days())
        session = sessions.filter(last_activity_at__gte=since).order_by("-last_activity_at").first()
    resumed = session is not None
    page = {"origin": check.origin, "page_url": check.page_url}
    if session is None:
        session = session_create(
            organization=widget.organization, agent=widget.agent, channel=Channel.WEB_WIDGET, end_user=end_user,
            metadata={
                "widget_id": widget.pk, "visitor_id": visitor_id, "verified": verified, "preview": check.preview,
                "referrer": (referrer or "")[:500], "locale": locale or widget.locale, **page,
            },
        )
    elif any(session.metadata.get(k) != v for k, v in page.items()):
        session.metadata = {**session.metadata, **page}
        Session.objects.filter(pk=session.pk).update(metadata=session.metadata)

    token, expires_at = widget_token_issue(
        widget=widget, origin=check.origin, visitor_id=visitor_id, end_user_id=end_user.pk if end_user else None,
        session_id=session.pk, verified=verified,
    )
    history = session_history(session=session) if resumed else []
    if not check.preview:
        install_seen(widget=widget, origin=check.origin, page_url=check.page_url)
        stat_increment(widget_id=widget.pk, loads=1)  # last: the day's row is locked until the commit
    return InitResult(widget=widget, token=token, expires_at=expires_at, session=session, visitor_id=visitor_id,
                      end_user=end_user, verified=verified, history=history, resumed=resumed)


# --- the token's principal ------------------------------------------------------------------

@dataclass
class WidgetCaller:
    """Who calls a token-authenticated widget API: the widget and the token's claims."""

    widget: ChatWidget
    claims: object  # widgets.tokens.WidgetClaims

    @property
    def idempotency_scope(self) -> str:
        return f"widget:{self.widget.pk}:{self.claims.principal}"


def widget_caller_load(*, raw_token: str, public_key: str | None = None) -> WidgetCaller:
    """Verify a widget token (401) and load its widget (404 when deactivated or deleted).

    When the caller names a public key, it must be the token's widget (403 token_widget_mismatch).
    """
    from widgets.tokens import widget_token_verify

    claims = widget_token_verify(raw=raw_token)
    widget = (
        ChatWidget.objects.select_related("organization", "agent")
        .filter(pk=claims.widget_id, organization_id=claims.org_id, is_active=True)
        .first()
    )
    if widget is None or not widget_token_current(widget=widget, claims=claims):
        raise ApiError(*WIDGET_NOT_FOUND)
    if public_key and public_key != widget.public_key:
        raise ApiError(
            "token_widget_mismatch", "이 토큰은 다른 위젯의 토큰입니다. (This token belongs to another widget.)", 403
        )
    return WidgetCaller(widget=widget, claims=claims)


SESSION_NOT_FOUND = ("session_not_found", "대화를 찾을 수 없습니다. (Session not found.)", 404)


def widget_session_get(*, caller: WidgetCaller, session_id=None) -> Session:
    """The caller's session (the token's when none is named); 404 for anyone else's, saying nothing more."""
    raw = session_id or caller.claims.session_id
    try:
        sid = uuid.UUID(str(raw))
    except (TypeError, ValueError, AttributeError):
        raise ApiError(*SESSION_NOT_FOUND, field="session_id") from None
    claims = caller.claims
    sessions = Session.objects.select_related("agent", "organization", "end_user").filter(
        pk=sid, organization_id=caller.widget.organization_id, channel=Channel.WEB_WIDGET,
        metadata__widget_id=caller.widget.pk,
    )
    session = sessions.first()
    if session is None:
        raise ApiError(*SESSION_NOT_FOUND, field="session_id")
    owner_ok = claims.end_user_id is not None and session.end_user_id == claims.end_user_id
    if not claims.verified:
        owner_ok = owner_ok and session.metadata.get("visitor_id") == claims.visitor_id
    if not owner_ok:
        raise ApiError(*SESSION_NOT_FOUND, field="session_id")
    return session


# --- chat -----------------------------------------------------------------------------------

def widget_message_validate(text) -> str:
    from runtime.text import user_text_validate

    return user_text_validate(text, max_chars=conf.max_message_chars())


def widget_chat_start(
    *, caller: WidgetCaller, text, session_id=None, client_message_id: str = "", context: dict | None = None
) -> tuple[Turn, bool]:
    """Store the visitor's message as the next turn of their session (idempotent on client_message_id)."""
    from runtime.services import turn_start

    text = widget_message_validate(text)
    session = widget_session_get(caller=caller, session_id=session_id)
    with transaction.atomic():  # the turn and today's counters in one commit
        turn, created = turn_start(
            organization=caller.widget.organization, agent=session.agent, channel=Channel.WEB_WIDGET, text=text,
            session=session, end_user=session.end_user, client_message_id=client_message_id or "",
            idempotency_scope=caller.idempotency_scope,
        )
        if created and not session.metadata.get("preview"):
            # Last in the transaction: the day's counter row stays locked only until the commit.
            stat_increment(widget_id=caller.widget.pk, messages=1, conversations=1 if turn.seq == 1 else 0)
    if created:
        _session_page_set(session=session, caller=caller, url=(context or {}).get("url"))
    return turn, created


def _session_page_set(*, session: Session, caller: WidgetCaller, url) -> None:
    """The page the visitor is on now (single-page apps change it without a reload): same origin only."""
    if not isinstance(url, str) or not url or url[:2000] == session.metadata.get("page_url"):
        return
    page_origin = origin_parse(url)
    if page_origin is None or str(page_origin) != caller.claims.origin:
        return
    session.metadata = {**session.metadata, "page_url": url[:2000]}
    Session.objects.filter(pk=session.pk).update(metadata=session.metadata)


def page_context_clean(context) -> dict:
    """The page the visitor is on, as the pipeline's page context: short strings only."""
    if not isinstance(context, dict):
        return {}
    page = {}
    for key in ("url", "title", "referrer"):
        value = context.get(key)
        if isinstance(value, str) and value.strip():
            page[key] = value.strip()[:500]
    return page


# --- events ---------------------------------------------------------------------------------

EVENT_TYPES = {choice.value for choice in WidgetEvent.Type}
EVENT_STATS = {"open": "opens", "form_submit": "form_submits"}
MAX_EVENT_PAYLOAD_BYTES = 8 * 1024
FORM_CLAIM_KINDS = ("email", "phone")


def _form_values_clean(payload: dict, *, extra_fields=()) -> dict[str, str]:
    """The submitted values of allow-listed fields (runtime/forms.py); anything else is dropped unread."""
    from runtime.forms import form_field_allowed

    values = payload.get("values")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ApiError("invalid", "payload.values must be an object.", 400, field="payload.values")
    cleaned = {}
    for key, value in list(values.items())[:20]:
        if not isinstance(key, str) or not re.match(r"^[a-z][a-z0-9_]{0,31}$", key):
            raise ApiError("invalid", "Form field names are lower-case letters, digits and _.", 400, field="payload.values")
        if value is None or not form_field_allowed(key, extra=extra_fields):
            continue  # a secret-like or unknown field: never stored
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ApiError("invalid", f"payload.values.{key} must be text.", 400, field=f"payload.values.{key}")
        cleaned[key] = str(value).strip()[:500]
    return cleaned


def _form_values_stored(values: dict[str, str]) -> dict[str, str]:
    """What F_widget_events keeps of a form: masked (the person's own data lives on their end user)."""
    from endusers.privacy import mask_identity, mask_text

    def masked(key: str, value: str) -> str:
        if key in ("email", "phone"):
            return mask_identity(kind=key, value=value)
        if key == "name":
            return value[:1] + "*" * (len(value) - 1)
        return mask_text(value)

    return {key: masked(key, value) for key, value in values.items()}


def widget_event_record(*, caller: WidgetCaller, event_type, session_id=None, payload=None) -> WidgetEvent:
    """Store a widget event; a form_submit also records its values as the visitor's claimed identities."""
    import json

    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ApiError(
            "invalid_event_type", f"Unknown event type. Use one of: {', '.join(sorted(EVENT_TYPES))}.", 400,
            field="type",
        )
    payload = payload if payload is not None else {}
    if not isinstance(payload, dict):
        raise ApiError("invalid", "payload must be an object.", 400, field="payload")
    if len(json.dumps(payload, ensure_ascii=False, default=str).encode()) > MAX_EVENT_PAYLOAD_BYTES:
        raise ApiError("payload_too_large", f"An event payload is limited to {MAX_EVENT_PAYLOAD_BYTES:,} bytes.", 413,
                       field="payload")
    session = widget_session_get(caller=caller, session_id=session_id) if session_id else None
    if session is None:
        try:
            session = widget_session_get(caller=caller)
        except ApiError:
            session = None
    if event_type == "page_view" and session is not None:
        _session_page_set(session=session, caller=caller, url=payload.get("url"))
    if event_type == "form_submit":
        agent = session.agent if session is not None else caller.widget.agent
        values = _form_values_clean(payload, extra_fields=agent.extra_form_fields)
        payload = {key: value for key, value in payload.items() if key == "turn_id" and isinstance(value, str)}
        payload["values"] = _form_values_stored(values)
        end_user = session.end_user if session is not None else None
        if end_user is not None:
            _form_claims_record(end_user=end_user, values=values)
    with transaction.atomic():
        event = WidgetEvent.objects.create(
            widget=caller.widget, session=session, event_type=event_type, visitor_id=caller.claims.visitor_id,
            origin=caller.claims.origin[:255], payload=payload,
        )
        preview = bool(session is not None and session.metadata.get("preview"))
        if event_type in EVENT_STATS and not preview:
            stat_increment(widget_id=caller.widget.pk, **{EVENT_STATS[event_type]: 1})
    return event


def _form_claims_record(*, end_user, values: dict[str, str]) -> None:
    from endusers.services import identity_claim, profile_name_set

    for kind in FORM_CLAIM_KINDS:
        if values.get(kind):
            identity_claim(end_user=end_user, kind=kind, value=values[kind])  # ApiError 400 on a bad value
    if values.get("name"):
        profile_name_set(end_user=end_user, name=values["name"])
