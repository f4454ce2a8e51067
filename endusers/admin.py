"""Admin for end users, identities, timeline, memories; merge and erase actions; masked list views."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.template.response import TemplateResponse

from endusers import services
from endusers.models import (
    EndUser,
    EndUserMessage,
    EndUserSession,
    ErasureRecord,
    Identity,
    Memory,
    MemoryEvent,
    MergeRecord,
)
from endusers.privacy import mask_identity, mask_text
from mejai.errors import ApiError
from runtime.admin_scoping import OrganizationScopedAdmin, OrganizationScopedTabularInline


class IdentityInline(OrganizationScopedTabularInline):
    model = Identity
    fields = ["kind", "value", "verified", "created_at", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # identities come from channels (normalized); merges move them


class MemoryInline(OrganizationScopedTabularInline):
    model = Memory
    fk_name = "end_user"
    fields = ["id", "text", "kind", "source", "created_at"]
    readonly_fields = ["id", "source", "created_at"]
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).filter(superseded_by__isnull=True, deleted_at__isnull=True)


class EndUserSessionInline(OrganizationScopedTabularInline):
    model = EndUserSession
    fields = ["session", "channel", "message_count", "first_seen_at", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(EndUser)
class EndUserAdmin(OrganizationScopedAdmin):
    list_display = ["id", "name_label", "identities_masked", "organization", "sessions_count", "last_seen_at",
                    "merged_into", "erased_at"]
    list_filter = ["organization", ("merged_into", admin.EmptyFieldListFilter), ("erased_at", admin.EmptyFieldListFilter)]
    search_fields = ["display_name", "identities__value"]
    readonly_fields = ["organization", "merged_into", "merged_at", "erased_at", "created_at", "last_seen_at"]
    fields = ["organization", "display_name", "profile", "merged_into", "merged_at", "erased_at", "created_at", "last_seen_at"]
    inlines = [IdentityInline, EndUserSessionInline, MemoryInline]
    actions = ["merge_selected", "erase"]
    list_select_related = ["organization"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("identities").annotate(
            _sessions=Count("timeline_sessions", distinct=True)
        )

    @admin.display(description="name")
    def name_label(self, obj):
        return obj.display_name or "—"

    @admin.display(description="identities")
    def identities_masked(self, obj):
        return ", ".join(f"{i.kind}:{mask_identity(kind=i.kind, value=i.value)}{'' if i.verified else ' (claimed)'}"
                         for i in obj.identities.all()) or "—"

    @admin.display(description="sessions", ordering="_sessions")
    def sessions_count(self, obj):
        return obj._sessions

    @admin.action(description="선택한 사용자 합치기 (확인 후) · Merge selected end users (after a confirmation)")
    def merge_selected(self, request, queryset):
        """Shows the plan (direction, trust, identities moving or detached, risks); merges on confirmation.

        The kept end user is the oldest verified one (a verified person is never merged into an
        unverified end user), or the oldest when none is verified.
        """
        users = list(queryset.order_by("created_at", "pk"))
        if len(users) < 2:
            self.message_user(request, "Select at least two end users to merge.", messages.WARNING)
            return None
        target = next((u for u in users if services.end_user_trust(u) == services.TRUST_VERIFIED), users[0])
        sources = [u for u in users if u.pk != target.pk]
        if request.POST.get("post") == "yes":
            for source in sources:
                try:
                    services.end_user_merge(source=source, target=target, actor=f"admin:{request.user.get_username()}")
                except ApiError as exc:
                    self.message_user(request, f"#{source.pk}: {exc.message}", messages.ERROR)
                    continue
                self.message_user(request, f"#{source.pk} merged into #{target.pk}.", messages.SUCCESS)
            return None
        plans, refusals = [], []
        for source in sources:
            try:
                plans.append(services.merge_plan(source=source, target=target).as_dict())
            except ApiError as exc:
                refusals.append(f"#{source.pk}: {exc.message}")
        return TemplateResponse(request, "admin/endusers/enduser/merge_confirmation.html", {
            **self.admin_site.each_context(request), "title": "합치기 확인 · Confirm the merge", "target": target,
            "target_trust": services.end_user_trust(target), "plans": plans, "refusals": refusals,
            "queryset": users, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "opts": self.model._meta,
        })

    @admin.action(description="Erase personal data of selected end users")
    def erase(self, request, queryset):
        for user in queryset:
            record = services.end_user_erase(end_user=user, actor=f"admin:{request.user.get_username()}")
            self.message_user(request, f"#{user.pk} erased: {record.counts}", messages.SUCCESS)


@admin.register(Identity)
class IdentityAdmin(OrganizationScopedAdmin):
    list_display = ["kind", "value_masked", "verified", "end_user", "organization", "last_seen_at"]
    list_filter = ["kind", "verified", "organization"]
    search_fields = ["value"]
    readonly_fields = ["organization", "end_user", "kind", "value", "created_at", "last_seen_at"]
    list_select_related = ["end_user", "organization"]

    def has_add_permission(self, request, *args):
        return False  # rows the pipeline writes: their identifying fields are read-only, a hand-made one cannot be saved

    @admin.display(description="value")
    def value_masked(self, obj):
        return mask_identity(kind=obj.kind, value=obj.value)


class MemoryEventInline(OrganizationScopedTabularInline):
    model = MemoryEvent
    fields = ["created_at", "action", "old_text", "new_text", "actor", "turn"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(Memory)
class MemoryAdmin(OrganizationScopedAdmin):
    list_display = ["id", "text_masked", "kind", "source", "end_user", "created_at", "is_active"]
    list_filter = ["kind", "source", ("deleted_at", admin.EmptyFieldListFilter), "organization"]
    search_fields = ["text"]
    readonly_fields = ["organization", "end_user", "source", "source_turn", "superseded_by", "deleted_at", "created_at",
                       "updated_at"]
    inlines = [MemoryEventInline]
    list_select_related = ["end_user"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:  # a new memory: pick its organization and (optionally) its end user
            return [f for f in self.readonly_fields if f not in ("organization", "end_user")]
        return self.readonly_fields

    @admin.display(description="text")
    def text_masked(self, obj):
        return mask_text(obj.text[:80])

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.is_active


@admin.register(EndUserSession)
class EndUserSessionAdmin(OrganizationScopedAdmin):
    list_display = ["session", "end_user", "channel", "message_count", "first_seen_at", "last_seen_at"]
    list_filter = ["channel"]
    readonly_fields = ["organization", "end_user", "session", "channel", "message_count", "first_seen_at", "last_seen_at"]
    list_select_related = ["end_user"]

    def has_add_permission(self, request, *args):
        return False  # rows the pipeline writes: their identifying fields are read-only, a hand-made one cannot be saved


@admin.register(EndUserMessage)
class EndUserMessageAdmin(OrganizationScopedAdmin):
    list_display = ["created_at", "end_user", "channel_label", "message_text", "reply_text"]
    list_filter = ["channel"]
    # The entry's page shows the texts (linked to their place in the transcript), not "turn 2 of <uuid>".
    fields = readonly_fields = ["organization", "end_user", "created_at", "channel_label", "message_text", "reply_text"]
    list_select_related = ["end_user", "turn"]

    def has_add_permission(self, request, *args):
        return False  # rows the pipeline writes: their identifying fields are read-only, a hand-made one cannot be saved

    @admin.display(description="channel", ordering="channel")
    def channel_label(self, obj):
        """The channel's label ("카카오"), not its stored value ("kakao")."""
        from django.utils.translation import gettext

        from runtime.models import Channel

        return gettext(Channel(obj.channel).label) if obj.channel in Channel.values else obj.channel

    @admin.display(description="message")
    def message_text(self, obj):
        """The text itself (masked), linked to the conversation's transcript — not "turn 1 of <uuid>"."""
        from django.urls import reverse
        from django.utils.html import format_html

        text = mask_text(" ".join(obj.turn.user_text.split())[:120]) or "—"
        url = reverse("admin:runtime_conversation_change", args=[obj.session_id]) + f"#turn-{obj.turn.seq}"
        return format_html('<a class="mejai-clip" href="{}">{}</a>', url, text)

    @admin.display(description="reply")
    def reply_text(self, obj):
        from django.utils.html import format_html

        return format_html('<span class="mejai-clip">{}</span>', mask_text(" ".join(obj.turn.reply_text.split())[:120]) or "—")


@admin.register(MergeRecord)
class MergeRecordAdmin(OrganizationScopedAdmin):
    list_display = ["created_at", "source", "target", "actor", "counts"]
    readonly_fields = ["organization", "source", "target", "actor", "counts", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(ErasureRecord)
class ErasureRecordAdmin(OrganizationScopedAdmin):
    list_display = ["created_at", "end_user_id_erased", "actor", "counts", "organization"]
    readonly_fields = ["organization", "end_user_id_erased", "actor", "counts", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
