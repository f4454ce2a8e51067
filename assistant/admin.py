"""Admin: delegated tasks with their status, reports, and clients (read-only, scoped like the rest)."""

from django.contrib import admin

from assistant.models import AssistantClient, DelegatedTask, Report


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Staff see their own organization's rows; superusers see all."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        membership = getattr(request.user, "mejai_membership", None)
        return queryset.filter(organization=membership.organization) if membership else queryset.none()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DelegatedTask)
class DelegatedTaskAdmin(OrganizationScopedAdmin):
    list_display = ("id", "status", "instruction", "client", "agent", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("instruction",)


@admin.register(Report)
class ReportAdmin(OrganizationScopedAdmin):
    list_display = ("id", "client", "task", "external_task_id", "created_at", "delivered_at")


@admin.register(AssistantClient)
class AssistantClientAdmin(OrganizationScopedAdmin):
    list_display = ("client_id", "user", "organization", "created_at", "last_seen_at")
