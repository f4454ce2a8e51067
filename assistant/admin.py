"""Admin: delegated tasks with their status, reports, and clients (read-only, scoped like the rest)."""

from django.contrib import admin

from assistant.models import AssistantClient, DelegatedTask, Report
from runtime.admin_scoping import OrganizationScopedAdmin


class ReadOnlyScopedAdmin(OrganizationScopedAdmin):
    """Rows the assistant writes: operators look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DelegatedTask)
class DelegatedTaskAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "status", "instruction", "client", "agent", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("instruction",)


@admin.register(Report)
class ReportAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "client", "task", "external_task_id", "created_at", "delivered_at")


@admin.register(AssistantClient)
class AssistantClientAdmin(ReadOnlyScopedAdmin):
    list_display = ("client_id", "user", "organization", "created_at", "last_seen_at")
