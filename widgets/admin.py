"""Admin for chat widgets: settings, install status, key/secret rotation, daily stats with a chart."""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from runtime.admin_scoping import OrganizationScopedAdmin, OrganizationScopedForm
from widgets import selectors, services
from widgets.models import ICONS, THEME_DEFAULTS, ChatWidget, WidgetDailyStat, WidgetEvent

COUNTER_LABELS = {
    "loads": ("로드", "Loads", "#94a3b8"),
    "opens": ("열림", "Opens", "#60a5fa"),
    "conversations": ("대화", "Conversations", "#4f46e5"),
    "messages": ("메시지", "Messages", "#10b981"),
    "form_submits": ("양식 제출", "Form submits", "#f59e0b"),
}
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in re.split(r"[\n,]", text or "") if line.strip()]


class ChatWidgetForm(OrganizationScopedForm):
    allowed_domains_text = forms.CharField(
        label="허용 도메인 · Allowed domains", required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "shop.example.com\n*.example.com\nlocalhost:*"}),
        help_text="한 줄에 하나: example.com (모든 포트), *.example.com (하위 도메인), localhost:8000 (그 포트만), "
        "https://example.com (https만). One per line.",
    )
    allowed_paths_text = forms.CharField(
        label="허용 경로 · Allowed paths", required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "/help\n/shop/"}),
        help_text="비워 두면 모든 경로. /shop 은 /shop, /shop/… 에 해당하고 /shopping 은 아닙니다. Empty: every path.",
    )
    theme_color = forms.CharField(label="색상 · Colour", initial=THEME_DEFAULTS["color"], max_length=7,
                                  widget=forms.TextInput(attrs={"type": "color"}))
    theme_icon = forms.ChoiceField(label="아이콘 · Icon", choices=[(i, i) for i in ICONS], initial="chat")
    theme_position = forms.ChoiceField(
        label="위치 · Position", initial="bottom-right",
        choices=[("bottom-right", "오른쪽 아래 · bottom right"), ("bottom-left", "왼쪽 아래 · bottom left")],
    )
    theme_launcher_title = forms.CharField(label="런처 제목 · Launcher title", required=False, max_length=40)
    theme_greeting = forms.CharField(label="인사말 · Greeting", required=False, max_length=200,
                                     help_text="닫힌 런처 옆 말풍선(누르면 채팅이 열리고, × 로 닫으면 그 탭에서는 다시 나오지 않아요)과 "
                                               "채팅 창 제목 아래에 보여요. 비워 두면 말풍선 없음. Shown in a bubble next to the "
                                               "closed launcher (click: opens the chat; ×: hidden for that tab) and under "
                                               "the chat's title. Empty: no bubble.")
    theme_welcome_message = forms.CharField(label="환영 메시지 · Welcome message", required=False, max_length=1000,
                                            widget=forms.Textarea(attrs={"rows": 2}))
    theme_mobile_allowed = forms.BooleanField(label="모바일에서 표시 · Show on mobile", required=False, initial=True)

    class Meta:
        model = ChatWidget
        fields = ["organization", "name", "agent", "locale", "require_verified_identity", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        if instance.pk:
            self.initial["allowed_domains_text"] = "\n".join(instance.allowed_domains or [])
            self.initial["allowed_paths_text"] = "\n".join(instance.allowed_paths or [])
            for key, value in instance.theme_resolved.items():
                self.initial[f"theme_{key}"] = value

    def clean_allowed_domains_text(self):
        try:
            return services.allowed_domains_clean(_lines(self.cleaned_data["allowed_domains_text"]))
        except ValidationError as exc:
            raise ValidationError(f"올바르지 않은 도메인 · Invalid domain: {exc.messages[0]}") from exc

    def clean_allowed_paths_text(self):
        try:
            return services.allowed_paths_clean(_lines(self.cleaned_data["allowed_paths_text"]))
        except ValidationError as exc:
            raise ValidationError(f"올바르지 않은 경로 · Invalid path: {exc.messages[0]}") from exc

    def clean_theme_color(self):
        color = self.cleaned_data["theme_color"]
        if not _COLOR.match(color or ""):
            raise ValidationError("#rrggbb 형식의 색상을 고르세요. Use a #rrggbb colour.")
        return color.lower()

    def clean(self):
        cleaned = super().clean()
        agent, organization = cleaned.get("agent"), cleaned.get("organization")
        if agent and organization and agent.organization_id != organization.pk:
            self.add_error("agent", "이 조직의 에이전트를 고르세요. Choose an agent of this organization.")
        return cleaned

    def save(self, commit=True):
        widget = super().save(commit=False)
        widget.allowed_domains = self.cleaned_data["allowed_domains_text"]
        widget.allowed_paths = self.cleaned_data["allowed_paths_text"]
        widget.theme = {key: self.cleaned_data[f"theme_{key}"] for key in THEME_DEFAULTS}
        if commit:
            widget.save()
        return widget


def stats_chart_svg(rows: list[dict], counter: str, color: str, *, width: int = 300, height: int = 64) -> str:
    """A small inline SVG bar chart of one counter over the rows' days (numbers and dates only)."""
    peak = max((row[counter] for row in rows), default=0) or 1
    gap = 2
    bar = max(1.0, (width - gap * (len(rows) - 1)) / max(1, len(rows)))
    rects = []
    for i, row in enumerate(rows):
        value = row[counter]
        h = 0 if value == 0 else max(2.0, (height - 4) * value / peak)
        x = i * (bar + gap)
        rects.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" rx="1.5" fill="{color}">'
            f'<title>{row["day"].isoformat()}: {int(value)}</title></rect>'
        )
    baseline = f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#e2e8f0"/>'
    return mark_safe(
        f'<svg class="mw-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{counter}">{baseline}{"".join(rects)}</svg>'
    )


@admin.register(ChatWidget)
class ChatWidgetAdmin(OrganizationScopedAdmin):
    form = ChatWidgetForm
    change_form_template = "admin/widgets/chatwidget/change_form.html"
    list_display = ["name", "organization", "agent", "public_key_code", "install_badge", "last_seen_at",
                    "is_active"]
    list_filter = ["is_active", "organization", "locale", "require_verified_identity"]
    search_fields = ["name", "public_key", "last_seen_origin"]
    readonly_fields = ["public_key", "snippet", "install_status", "identity_secret_display", "key_rotated_at",
                       "secret_rotated_at", "created_at", "updated_at"]
    actions = ["rotate_public_keys", "rotate_identity_secrets"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "agent", "locale", "is_active"]}),
        ("설치 · Install", {"fields": ["public_key", "snippet", "install_status"]}),
        ("허용 위치 · Where it may run", {"fields": ["allowed_domains_text", "allowed_paths_text"]}),
        ("모양 · Appearance", {"fields": ["theme_color", "theme_icon", "theme_position", "theme_launcher_title",
                                        "theme_greeting", "theme_welcome_message", "theme_mobile_allowed"]}),
        ("사용자 확인 · Identity verification", {
            "fields": ["require_verified_identity", "identity_secret_display", "secret_rotated_at"],
            "description": "고객 서버에서 HMAC-SHA256(identity secret, user id)를 계산해 "
            "window.mejaiWidget.user.hash 로 넘기면, 기기가 달라도 대화 기록이 이어집니다. "
            "Sign the user id on your server to give signed-in users their history on every device.",
        }),
        ("기록 · Record", {"fields": ["key_rotated_at", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    # --- columns and read-only fields ----------------------------------------------------------

    @admin.display(description="public key", ordering="public_key")
    def public_key_code(self, obj):
        return format_html("<code>{}</code>", obj.public_key)

    @admin.display(description="설치 · installed")
    def install_badge(self, obj):
        if obj.last_seen_at:
            return format_html('<span class="mw-badge mw-badge-ok" title="{}">● {}</span>', obj.last_seen_origin,
                               obj.last_seen_origin)
        return mark_safe('<span class="mw-badge mw-badge-wait">○ 아직 설치되지 않음 · not seen yet</span>')

    @admin.display(description="설치 코드 · Snippet")
    def snippet(self, obj):
        if not obj.pk:
            return "저장하면 만들어집니다. Created on save."
        code = f'<script async src="{settings.PUBLIC_BASE_URL}/widget.js" data-key="{obj.public_key}"></script>'
        return format_html('<pre class="mw-snippet">{}</pre>', code)

    @admin.display(description="설치 상태 · Install status")
    def install_status(self, obj):
        if not obj.last_seen_at:
            return mark_safe(
                '<span class="mw-badge mw-badge-wait">○ 아직 어떤 사이트에서도 불러오지 않았습니다 · '
                "not loaded on any site yet</span>"
            )
        return format_html(
            '<span class="mw-badge mw-badge-ok">● 설치됨 · installed</span><br>'
            "처음 · first: <code>{}</code> {}<br>마지막 · last: <code>{}</code> {}<br><small>{}</small>",
            obj.first_seen_origin, timezone.localtime(obj.first_seen_at).strftime("%Y-%m-%d %H:%M"),
            obj.last_seen_origin, timezone.localtime(obj.last_seen_at).strftime("%Y-%m-%d %H:%M"),
            obj.last_seen_page_url,
        )

    @admin.display(description="identity secret")
    def identity_secret_display(self, obj):
        if not obj.pk:
            return "저장하면 만들어집니다. Created on save."
        return format_html(
            '<details><summary>보기 · reveal</summary><code class="mw-secret">{}</code></details>'
            "<small>고객 서버에만 두세요. 브라우저에 넣지 마세요. Keep it on your server, never in the page.</small>",
            obj.identity_secret,
        )

    # --- rotation: bulk actions and per-widget buttons ------------------------------------------

    @admin.action(description="공개 키 교체 · Rotate public keys (old snippets stop working)")
    def rotate_public_keys(self, request, queryset):
        for widget in queryset:
            services.widget_public_key_rotate(widget=widget)
        self.message_user(request, f"{queryset.count()}개 위젯의 공개 키를 교체했습니다. 설치 코드를 바꿔 주세요. "
                          "Public keys rotated: update the snippets.", messages.WARNING)

    @admin.action(description="identity secret 교체 · Rotate identity secrets")
    def rotate_identity_secrets(self, request, queryset):
        for widget in queryset:
            services.widget_identity_secret_rotate(widget=widget)
        self.message_user(request, f"{queryset.count()}개 위젯의 identity secret을 교체했습니다. "
                          "Identity secrets rotated: update your servers.", messages.WARNING)

    def get_urls(self):
        urls = super().get_urls()
        custom = [
            path("<int:object_id>/rotate-key/", self.admin_site.admin_view(self.rotate_key_view),
                 name="widgets_chatwidget_rotate_key"),
            path("<int:object_id>/rotate-secret/", self.admin_site.admin_view(self.rotate_secret_view),
                 name="widgets_chatwidget_rotate_secret"),
        ]
        return custom + urls

    def _rotate(self, request, object_id: int, rotate, done: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        widget = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, widget):
            raise PermissionDenied
        rotate(widget=widget)
        self.log_change(request, widget, done)
        self.message_user(request, done, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:widgets_chatwidget_change", args=[widget.pk]))

    def rotate_key_view(self, request, object_id: int):
        return self._rotate(request, object_id, services.widget_public_key_rotate,
                            "공개 키를 교체했습니다. 사이트의 설치 코드를 바꿔 주세요. Public key rotated.")

    def rotate_secret_view(self, request, object_id: int):
        return self._rotate(request, object_id, services.widget_identity_secret_rotate,
                            "identity secret을 교체했습니다. 고객 서버의 설정을 바꿔 주세요. Identity secret rotated.")

    # --- stats on the change page --------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        widget = self.get_queryset(request).filter(pk=object_id).first() if str(object_id).isdigit() else None
        if widget is not None:
            rows = selectors.widget_stats_daily(widget=widget, days=30)
            totals = {name: sum(row[name] for row in rows) for name in WidgetDailyStat.COUNTERS}
            extra_context["widget_stats"] = {
                "charts": [
                    {"name": name, "label_ko": ko, "label_en": en, "total": totals[name],
                     "today": rows[-1][name], "svg": stats_chart_svg(rows, name, color)}
                    for name, (ko, en, color) in COUNTER_LABELS.items()
                ],
                "since": rows[0]["day"], "until": rows[-1]["day"],
                "rows": list(reversed([row for row in rows if any(row[n] for n in WidgetDailyStat.COUNTERS)]))[:14],
                "counters": list(COUNTER_LABELS.items()),
                "conversion": round(100 * totals["conversations"] / totals["loads"], 1) if totals["loads"] else None,
            }
            extra_context["recent_events"] = selectors.widget_events_recent(widget=widget, limit=10)
            extra_context["rotate_key_url"] = reverse("admin:widgets_chatwidget_rotate_key", args=[widget.pk])
            extra_context["rotate_secret_url"] = reverse("admin:widgets_chatwidget_rotate_secret", args=[widget.pk])
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(WidgetDailyStat)
class WidgetDailyStatAdmin(OrganizationScopedAdmin):
    organization_path = "widget__organization"
    list_display = ["day", "widget", "shard", "loads", "opens", "conversations", "messages", "form_submits"]
    list_filter = ["widget", "day"]
    date_hierarchy = "day"
    readonly_fields = ["widget", "day", "shard", *WidgetDailyStat.COUNTERS]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WidgetEvent)
class WidgetEventAdmin(OrganizationScopedAdmin):
    organization_path = "widget__organization"
    list_display = ["created_at", "event_type", "widget", "origin", "visitor_id", "session_link"]
    list_filter = ["event_type", "widget"]
    search_fields = ["visitor_id", "origin"]
    date_hierarchy = "created_at"
    readonly_fields = ["widget", "session", "event_type", "visitor_id", "origin", "payload", "created_at"]
    list_select_related = ["widget"]

    @admin.display(description="session")
    def session_link(self, obj):
        if not obj.session_id:
            return "—"
        url = reverse("admin:runtime_session_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.session_id)[:8])

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


