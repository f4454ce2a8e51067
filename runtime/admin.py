"""Admin for organizations, agents, prompts (activate / roll back), API keys, sessions and turns."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.utils.html import format_html

from runtime import prompts
from runtime.admin_scoping import (
    OrganizationScopedAdmin,
    OrganizationScopedTabularInline,
    SuperuserEditOnlyAdmin,
    SuperuserOnlyMixin,
    sees_every_organization,
)
from runtime.auth import api_key_hash, api_key_revoke
from runtime.models import (
    Agent,
    ApiKey,
    Membership,
    Organization,
    PromptAudit,
    PromptTemplate,
    PromptVersion,
    Session,
    Turn,
)

admin.site.site_header = "mejai"
admin.site.site_title = "mejai 관리자"
admin.site.index_title = "운영 관리 · Operations"
# The header links and breadcrumbs lead everywhere; the left model list would take a quarter of 1280 px.
admin.site.enable_nav_sidebar = False


# Users and groups belong to no organization: a staff member who could edit them could make
# themselves a superuser, so only superusers see them.
for _model, _admin in ((get_user_model(), UserAdmin), (Group, GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(f"Scoped{_admin.__name__}", (SuperuserOnlyMixin, _admin), {}))


def _axes_admin_register() -> None:
    """Failed-login records (django-axes) hold usernames and addresses of every organization: superusers only."""
    from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    for model, model_admin in ((AccessAttempt, AccessAttemptAdmin), (AccessLog, AccessLogAdmin),
                               (AccessFailureLog, AccessFailureLogAdmin)):
        if not admin.site.is_registered(model):
            admin.site.register(model, type(f"Scoped{model_admin.__name__}", (SuperuserOnlyMixin, model_admin), {}))


_axes_admin_register()


@admin.register(Organization)
class OrganizationAdmin(SuperuserEditOnlyAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Membership)
class MembershipAdmin(SuperuserEditOnlyAdmin):
    list_display = ["user", "organization", "created_at"]
    autocomplete_fields = ["organization"]


@admin.register(Agent)
class AgentAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "model_label", "temperature", "max_tokens", "is_active", "prompt"]
    list_filter = ["is_active", "organization"]
    search_fields = ["name"]

    @admin.display(description="model")
    def model_label(self, obj):
        return obj.model_name


class PromptVersionInline(OrganizationScopedTabularInline):
    model = PromptVersion
    fields = ["version", "is_active", "note", "author", "created_at", "text"]
    readonly_fields = ["version", "is_active", "author", "created_at", "text", "note"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # new versions go through the version form so they are numbered and audited


class PromptAuditInline(OrganizationScopedTabularInline):
    model = PromptAudit
    fields = ["created_at", "action", "version", "previous_version", "actor", "actor_label"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PromptTemplate)
class PromptTemplateAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "active_version_label"]
    search_fields = ["name"]
    inlines = [PromptVersionInline, PromptAuditInline]
    actions = ["roll_back"]

    @admin.display(description="active version")
    def active_version_label(self, obj):
        version = obj.active_version
        return f"v{version.version}" if version else "—"

    @admin.action(description="Roll back to the previously active version")
    def roll_back(self, request, queryset):
        for template in queryset:
            try:
                version = prompts.prompt_version_rollback(template=template, actor=request.user)
                self.message_user(request, f"{template.name}: v{version.version} is active again.")
            except Exception as exc:
                self.message_user(request, f"{template.name}: {exc}", messages.WARNING)


@admin.register(PromptVersion)
class PromptVersionAdmin(OrganizationScopedAdmin):
    list_display = ["template", "version", "is_active", "note", "author", "created_at"]
    list_filter = ["is_active", "template"]
    fields = ["template", "text", "note", "version", "is_active", "author", "created_at"]
    readonly_fields = ["version", "is_active", "author", "created_at"]
    actions = ["activate"]

    def get_readonly_fields(self, request, obj=None):
        # A saved version is history: change it by adding a new version.
        return self.readonly_fields + (["template", "text"] if obj else [])

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        version = prompts.prompt_version_create(template=obj.template, text=obj.text, note=obj.note, author=request.user)
        obj.pk, obj.version, obj.is_active = version.pk, version.version, version.is_active

    @admin.action(description="Activate the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        version = prompts.prompt_version_activate(version=queryset.get(), actor=request.user)
        self.message_user(request, f"{version} is now active.")


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "key_prefix", "created_at", "last_used_at", "status"]
    list_filter = ["organization"]
    fields = ["organization", "name", "key_prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A key's organization is what it grants access to: only a superuser picks it, and never
        # moves an issued key to another organization.
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None or not sees_every_organization(request):
            fields.append("organization")
        return fields

    @admin.display(description="status")
    def status(self, obj):
        return "active" if obj.revoked_at is None else format_html('<span style="color:#b00">revoked</span>')

    def save_model(self, request, obj, form, change):
        if not change and not sees_every_organization(request):
            obj.organization = self.request_organization_or_403(request)
        if not change:
            import secrets

            raw = ApiKey.PREFIX + secrets.token_urlsafe(32)
            obj.key_prefix, obj.key_hash = raw[:12], api_key_hash(raw)
            super().save_model(request, obj, form, change)
            self.message_user(
                request, f"New API key (shown once — copy it now): {raw}", messages.SUCCESS
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(api_key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")


class TurnInline(OrganizationScopedTabularInline):
    model = Turn
    fields = ["seq", "status", "user_text", "reply_text", "model", "tokens_in", "tokens_out", "ttft_ms", "latency_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Session)
class SessionAdmin(OrganizationScopedAdmin):
    list_display = ["id", "organization", "channel", "agent", "end_user", "status", "last_seq", "last_activity_at"]
    list_filter = ["channel", "status", "organization"]
    readonly_fields = ["id", "created_at", "last_activity_at", "last_seq"]
    raw_id_fields = ["end_user"]
    inlines = [TurnInline]


@admin.register(Turn)
class TurnAdmin(OrganizationScopedAdmin):
    list_display = ["session", "seq", "status", "error_code", "handled_by", "model", "tokens_in", "tokens_out", "ttft_ms", "latency_ms", "created_at"]
    list_filter = ["status", "error_code", "handled_by", "session__channel"]
    raw_id_fields = ["session", "author", "prompt_version"]
    readonly_fields = [f.name for f in Turn._meta.fields]
    search_fields = ["client_message_id"]

    def has_add_permission(self, request, *args):
        return False  # rows the pipeline writes: their identifying fields are read-only, a hand-made one cannot be saved


from runtime import admin_conversations  # noqa: E402,F401  (the conversations list and transcript)
