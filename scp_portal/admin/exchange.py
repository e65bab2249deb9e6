"""Portal screens of the exchange: webhook subscriptions and their deliveries (dead letters
replayable), batch jobs with their progress, and connectors with their health."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html

from exchange.batch import progress
from exchange.deliveries import delivery_replay
from exchange.models import Connector, Delivery, DeliveryAttempt, ExportJob, ImportJob, Subscription, endpoint_display
from lifecycle.configuration import connector_check, connector_save
from registry.models import Integration
from scp_core.errors import ApiError

from .scoping import TenantScopedAdmin


class _TenantScoped(TenantScopedAdmin):
    tenant_path = "integration__tenant_id"


@admin.register(Subscription)
class SubscriptionAdmin(_TenantScoped):
    list_display = ("integration", "endpoint", "event_types", "active", "consecutive_failures", "disabled_reason")
    exclude = ("secret",)
    readonly_fields = ("integration", "endpoint", "event_types", "active", "consecutive_failures", "circuit_open_until",
                       "disabled_reason", "created_at")

    @admin.display(description="endpoint")
    def endpoint(self, obj):
        return endpoint_display(obj.url)  # never credentials or the query string


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    readonly_fields = ("number", "attempted_at", "status_code", "error", "duration_ms")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(_TenantScoped):
    tenant_path = "subscription__integration__tenant_id"
    list_display = ("id", "event_type", "subscription", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status",)
    inlines = [DeliveryAttemptInline]
    readonly_fields = ("id", "event", "subscription", "status", "attempts", "next_attempt_at", "last_error", "delivered_at")
    actions = ["replay_dead_letters"]

    @admin.display(description="event")
    def event_type(self, obj):
        return obj.event.event_type

    def get_actions(self, request):
        actions = super().get_actions(request)
        roles = self.roles(request)
        if not (roles.is_root or roles.admin_tenants):
            actions.pop("replay_dead_letters", None)  # who may replay-delivery; auditors only read
        return actions

    @admin.action(description="Replay the selected deliveries (dead letters or delivered)")
    def replay_dead_letters(self, request, queryset):
        # The service checks the permission per delivery and audits each replay.
        replayed, refused = 0, []
        for delivery in queryset.select_related("subscription__integration"):
            try:
                delivery_replay(delivery=delivery, actor=request.user, request_id=request.request_id)
                replayed += 1
            except ApiError as exc:
                refused.append(f"{delivery.pk}: {exc.detail}")
        if replayed:
            self.message_user(request, f"{replayed} deliveries queued again.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, f"Not replayed: {line}", messages.ERROR)


@admin.register(ImportJob)
class ImportJobAdmin(_TenantScoped):
    list_display = ("id", "integration", "vertical", "record_type", "status", "progress_bar", "rows_failed", "speed")
    list_filter = ("status",)
    readonly_fields = [f.name for f in ImportJob._meta.fields]

    @admin.display(description="progress")
    def progress_bar(self, job):
        percent = 100 if job.status == "completed" else int(100 * job.rows_done / job.rows_total) if job.rows_total else 0
        return format_html('<progress max="100" value="{}"></progress> {} / {}', percent, job.rows_done, job.rows_total)

    @admin.display(description="rows/s · ETA")
    def speed(self, job):
        p = progress(job)
        return f"{p['rows_per_second']} rows/s" + (f" · {p['eta_seconds']} s left" if p["eta_seconds"] is not None else "")


@admin.register(ExportJob)
class ExportJobAdmin(_TenantScoped):
    list_display = ("id", "integration", "vertical", "file_format", "status", "rows_written", "rows_excluded", "expires_at")
    readonly_fields = [f.name for f in ExportJob._meta.fields]


@admin.register(Connector)
class ConnectorAdmin(_TenantScoped):
    list_display = ("name", "integration", "adapter", "vertical", "record_type", "status", "last_success_at", "last_error")
    list_filter = ("status", "adapter")
    readonly_fields = ("status", "consecutive_failures", "next_run_at", "last_success_at", "last_error")

    def has_add_permission(self, request):
        roles = self.roles(request)
        return roles.is_root or bool(roles.admin_tenants)

    def has_change_permission(self, request, obj=None):
        return self.has_add_permission(request)

    def get_form(self, request, obj=None, **kwargs):
        form_class = super().get_form(request, obj, **kwargs)

        class CheckedConnectorForm(form_class):
            def clean(self):
                # The service's own checks, shown on the form instead of failing the save.
                data = super().clean()
                if not self.errors:
                    draft = Connector(**{f: data.get(f) for f in ("integration", "name", "adapter", "source", "vertical",
                                                                   "record_type", "every_seconds") if f in data})
                    try:
                        connector_check(actor=request.user, connector=draft)
                    except ApiError as exc:
                        raise forms.ValidationError([e.get("message", "") for e in exc.errors] or [exc.detail]) from exc
                return data

        return CheckedConnectorForm

    def save_model(self, request, obj, form, change):
        if change and not self.in_scope(request, obj):
            raise PermissionDenied
        connector_save(actor=request.user, connector=obj, request_id=request.request_id)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "integration":  # only integrations this person may see
            kwargs["queryset"] = Integration.objects.visible_to(self.roles(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
