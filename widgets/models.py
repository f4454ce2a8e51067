"""Chat widgets (one per page), their events, and per-day widget statistics."""

from __future__ import annotations

import secrets
import string

from django.db import models

from runtime import storage

PUBLIC_KEY_PREFIX = "mw_pk_"
IDENTITY_SECRET_PREFIX = "mw_is_"
_ALPHABET = string.ascii_letters + string.digits

THEME_DEFAULTS = {
    "color": "#4f46e5",
    "icon": "chat",
    "position": "bottom-right",
    "launcher_title": "",
    "greeting": "",
    "welcome_message": "",
    "mobile_allowed": True,
}
POSITIONS = ("bottom-right", "bottom-left")
ICONS = ("chat", "help", "sparkle", "headset")
CORS_PATTERNS_CACHE_KEY = "widget:cors-patterns"


def public_key_generate() -> str:
    return PUBLIC_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def identity_secret_generate() -> str:
    return IDENTITY_SECRET_PREFIX + secrets.token_urlsafe(32)


class ChatWidget(models.Model):
    class Locale(models.TextChoices):
        KO = "ko", "한국어"
        EN = "en", "English"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="widgets")
    name = storage.CharField(max_length=100)
    agent = models.ForeignKey("runtime.Agent", on_delete=models.PROTECT, related_name="widgets")
    public_key = storage.CharField(
        max_length=40, unique=True, editable=False, help_text="Public key of the install snippet (mw_pk_…)."
    )
    identity_secret = storage.CharField(
        max_length=80, editable=False,
        help_text="Secret of HMAC-SHA256 identity verification; keep it on the customer's server.",
    )
    allowed_domains = storage.JSONField(
        default=list, blank=True,
        help_text="Hosts the widget may run on: example.com, *.example.com (subdomains), "
        "localhost:8000 (one port), https://example.com (one scheme).",
    )
    allowed_paths = storage.JSONField(
        default=list, blank=True, help_text="Optional path prefixes (/shop, /help/); empty: every path."
    )
    theme = storage.JSONField(default=dict, blank=True)
    locale = storage.CharField(max_length=5, choices=Locale.choices, default=Locale.KO)
    require_verified_identity = models.BooleanField(
        default=False, help_text="Refuse visitors whose user id is not signed by the customer's server."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    key_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Install status: where the widget was first and last loaded from.
    first_seen_origin = storage.CharField(max_length=255, blank=True, editable=False)
    first_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_origin = storage.CharField(max_length=255, blank=True, editable=False)
    last_seen_page_url = storage.CharField(max_length=500, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "B_chat_widgets"
        ordering = ["organization", "name"]
        verbose_name = "chat widget"
        indexes = [models.Index(fields=["organization", "is_active"], name="widget_org_active_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.public_key:
            self.public_key = public_key_generate()
        if not self.identity_secret:
            self.identity_secret = identity_secret_generate()
        super().save(*args, **kwargs)
        from django.core.cache import cache

        cache.delete(CORS_PATTERNS_CACHE_KEY)  # CORS preflights see new domains at once

    @property
    def is_installed(self) -> bool:
        return self.last_seen_at is not None

    @property
    def theme_resolved(self) -> dict:
        theme = {**THEME_DEFAULTS, **{k: v for k, v in (self.theme or {}).items() if k in THEME_DEFAULTS}}
        if theme["position"] not in POSITIONS:
            theme["position"] = THEME_DEFAULTS["position"]
        return theme


class WidgetEvent(models.Model):
    class Type(models.TextChoices):
        LOAD = "load", "load"
        OPEN = "open", "open"
        CLOSE = "close", "close"
        CTA_CLICK = "cta_click", "CTA click"
        FORM_SUBMIT = "form_submit", "form submit"
        PAGE_VIEW = "page_view", "page view"

    widget = models.ForeignKey(ChatWidget, on_delete=models.CASCADE, related_name="events")
    session = models.ForeignKey(
        "runtime.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="widget_events"
    )
    event_type = storage.CharField(max_length=20, choices=Type.choices)
    visitor_id = storage.CharField(max_length=64, blank=True)
    origin = storage.CharField(max_length=255, blank=True)
    payload = storage.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "F_widget_events"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["widget", "event_type", "-created_at"], name="widget_event_type_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.widget_id}"


class WidgetDailyStat(models.Model):
    """Counters of one widget on one day (in TIME_ZONE); written by widgets.services.stat_increment.

    A day's counters are spread over SHARDS rows (a random one per increment) so concurrent
    messages of a busy widget do not queue on one locked row; readers sum the shards.
    """

    SHARDS = 8

    widget = models.ForeignKey(ChatWidget, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    shard = models.PositiveSmallIntegerField(default=0)
    loads = models.PositiveIntegerField(default=0)
    opens = models.PositiveIntegerField(default=0)
    conversations = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    form_submits = models.PositiveIntegerField(default=0)

    COUNTERS = ("loads", "opens", "conversations", "messages", "form_submits")

    class Meta:
        db_table = "F_widget_daily_stats"
        ordering = ["widget", "-day"]
        verbose_name = "widget daily statistics"
        verbose_name_plural = "widget daily statistics"
        constraints = [models.UniqueConstraint(fields=["widget", "day", "shard"], name="widget_stat_unique_day_shard")]

    def __str__(self) -> str:
        return f"{self.widget_id} {self.day}"
