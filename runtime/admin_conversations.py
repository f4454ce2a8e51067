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
from runtime.identities import identity_mask, text_mask
from runtime.models import Conversation, Session


def _preview(text: str | None, limit: int = 60) -> str:
    # masked like every other list of personal text (endusers registers the masking)
    return truncatechars(text_mask(" ".join((text or "").split())), limit) if text else "—"


def _transcript(session) -> list:
    """The session's turns for a page, each with `error_text`: its stored error as "한국어 (English)"."""
    from mejai.error_messages import message_bilingual

    turns = selectors.conversation_transcript(session=session)
    for turn in turns:
        turn.error_text = message_bilingual(turn.error_code, turn.error) if turn.error else ""
    return turns


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
        # "Test this agent" chats are the operator's own tries, not customers' conversations.
        queryset = super().get_queryset(request).exclude(metadata__has_key="preview", metadata__preview=True)
        return selectors.conversations_annotate(queryset)

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
            identities = [
                {"kind": i.get_kind_display(), "value": identity_mask(kind=i.kind, value=i.value), "verified": i.verified}
                for i in session.end_user.identities.order_by("kind", "pk")
            ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Conversation"),
            "subtitle": f"{session.get_channel_display()} · {timezone.localtime(session.created_at):%Y-%m-%d %H:%M}",
            "session": session,
            "turns": _transcript(session),
            "identities": identities,
            "end_user_url": reverse("admin:endusers_enduser_change", args=[session.end_user_id])
            if session.end_user_id else "",
            "has_view_permission": True,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/runtime/conversation/transcript.html", context)


def agent_try_view(request, agent_id):
    """'Test this agent' on the agent's admin page: a chat through the real pipeline in preview mode.

    The conversation is an API-channel session marked `metadata.preview` (so the overview and every
    statistic leave it out) and tied to the operator's browser session; "start over" begins a new one.
    """
    from django.core.exceptions import PermissionDenied
    from django.http import Http404, HttpResponseRedirect

    from mejai.errors import ApiError
    from runtime.models import Agent, Channel
    from runtime.services import turn_run

    agent_admin = admin.site._registry[Agent]
    if not agent_admin.has_view_permission(request):
        raise PermissionDenied
    agent = agent_admin.get_queryset(request).filter(pk=agent_id).select_related("organization").first()
    if agent is None:
        raise Http404
    key = f"mejai-agent-try-{agent.pk}"
    session = Session.objects.filter(pk=request.session.get(key), agent=agent).first() if request.session.get(key) else None
    error = ""
    if request.method == "POST":
        if request.POST.get("restart"):
            request.session.pop(key, None)
            return HttpResponseRedirect(request.path)
        text = request.POST.get("message", "")
        try:
            outcome = turn_run(organization=agent.organization, agent=agent, channel=Channel.API, text=text,
                               session=session, session_metadata={"preview": True,
                                                                  "tester": request.user.get_username()})
        except ApiError as exc:
            from mejai.error_messages import message_bilingual

            error = message_bilingual(exc.code, exc.message)
        else:
            request.session[key] = str(outcome.session_id)
            return HttpResponseRedirect(request.path)
    context = {
        **admin.site.each_context(request),
        "opts": Agent._meta,
        "title": _("Test this agent"),
        "subtitle": agent.name,
        "agent": agent,
        "turns": _transcript(session) if session else [],
        "error": error,
    }
    # Refused input is a 400 with the page and its bilingual message (like the Kakao simulator).
    return TemplateResponse(request, "admin/runtime/agent/try.html", context, status=400 if error else 200)
