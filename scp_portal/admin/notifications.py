"""The record of e-mail notifications (issue #14): what was told to whom and whether it was
sent. Read-only: rows are made by `lifecycle.notifications` and changed only by its sender."""
from django.contrib import admin

from lifecycle.models import Notification

from .scoping import TenantScopedAdmin


@admin.register(Notification)
class NotificationAdmin(TenantScopedAdmin):
    list_display = ("created_at", "event", "recipient", "integration", "status", "attempts", "sent_at")
    list_filter = ("event", "status")
    search_fields = ("recipient", "subject")
    exclude = ("key", "claimed_until")

    def scope(self, queryset, roles):  # nothing may be added, changed or deleted (RoleScopedAdmin)
        return super().scope(queryset, roles).select_related("integration__tenant")
