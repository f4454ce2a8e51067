"""The operator's conversations: a list of every channel's sessions and a chat-like transcript (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from runtime import selectors
from runtime.admin_scoping import OrganizationScopedAdmin
from runtime.models import Conversation, Session


def _preview(text: str | None, limit: int = 60) -> str:
    from endusers.privacy import mask_text  # masked like every other list of personal text

    return truncatechars(mask_text(" ".join((text or "").split())), limit) if text else "—"


@admin.register(Conversation)
class ConversationAdmin(OrganizationScopedAdmin):
    list_display = ["started", "channel_label", "end_user_label", "first_message", "last_message", "turns",
                    "status", "last_activity_at"]
    list_display_links = ["started", "first_message"]
    list_filter = ["channel", "agent", "status", "last_activity_at", "organization"]
    search_fields = ["turns__user_text", "turns__reply_text", "end_user__display_name", "=id"]
    search_help_text = _("Search in message texts and customer names.")
    date_hierarchy = "last_activity_at"
    list_per_page = 50
    show_full_result_count = False  # counting a large organization's sessions on every page is the slow part
    ordering = ["-last_activity_at"]

    def get_queryset(self, request):
        return selectors.conversations_annotate(super().get_queryset(request))

    # Read-only: a transcript is a record, not a form.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        from django.contrib.auth import get_permission_codename

        opts = self.model._meta
        session_opts = Session._meta
        return any(request.user.has_perm(f"{o.app_label}.{get_permission_codename(a, o)}")
                   for o in (opts, session_opts) for a in ("view", "change"))

    @admin.display(description=_("started"), ordering="created_at")
    def started(self, obj):
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M") if obj.created_at else "—"

    @admin.display(description=_("channel"), ordering="channel")
    def channel_label(self, obj):
        return obj.get_channel_display()

    @admin.display(description=_("end user"))
    def end_user_label(self, obj):
        if obj.end_user_id is None:
            return _("anonymous")
        return obj.end_user.display_name or f"#{obj.end_user_id}"

    @admin.display(description=_("first message"))
    def first_message(self, obj):
        return format_html('<span class="mejai-clip">{}</span>', _preview(obj.first_text))

    @admin.display(description=_("last message"))
    def last_message(self, obj):
        if obj.last_seq <= 1:
            return format_html('<span class="mejai-clip">{}</span>', _preview(obj.last_reply))
        return format_html('<span class="mejai-clip">{}</span>', _preview(obj.last_text))

    @admin.display(description=_("messages"), ordering="last_seq")
    def turns(self, obj):
        return obj.last_seq

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The transcript: bubbles with times, model, tokens, latency and errors; the person's identities."""
        from django.core.exceptions import PermissionDenied
        from django.http import Http404

        if not self.has_view_permission(request):
            raise PermissionDenied
        session = self.get_object(request, object_id)
        if session is None:
            raise Http404
        identities = []
        if session.end_user_id:
            from endusers.privacy import mask_identity

            identities = [
                {"kind": i.get_kind_display(), "value": mask_identity(kind=i.kind, value=i.value), "verified": i.verified}
                for i in session.end_user.identities.order_by("kind", "pk")
            ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Conversation"),
            "subtitle": f"{session.get_channel_display()} · {timezone.localtime(session.created_at):%Y-%m-%d %H:%M}",
            "session": session,
            "turns": selectors.conversation_transcript(session=session),
            "identities": identities,
            "end_user_url": reverse("admin:endusers_enduser_change", args=[session.end_user_id])
            if session.end_user_id else "",
            "has_view_permission": True,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/runtime/conversation/transcript.html", context)
