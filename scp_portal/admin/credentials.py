"""Credentials in the portal (issue #14 item 5): the panel on an integration's page (its
register with issue, last-use and expiry dates, in-grace / revoked / aged flags, the rotate form
with the grace choice and a revoke button per previous credential) and a read-only list of the
credentials a person may see. The forms post to the integration's action screens, which call
the services of lifecycle.credentials (rotate-secret, rotate-api-key, revoke-credential)."""
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from lifecycle import credentials
from lifecycle.credentials import DEFAULT_GRACE_SECONDS, GRACE_CHOICES, State
from lifecycle.permissions import may
from registry.models import Credential, CredentialKind, Integration
from scp_core.errors import ApiError

from .scoping import RoleScopedAdmin

_STATE_LABELS = {
    State.CURRENT: "current", State.IN_GRACE: "in grace", State.GRACE_ENDED: "grace ended (refused)",
    State.REVOKED: "revoked",
}


def panel(request, integration, site_name="admin"):
    """What the credentials panel shows this person about this integration."""
    now = timezone.now()
    rows = credentials.for_integration(integration, now)
    for row in rows:
        row["state_label"] = _STATE_LABELS[row["state"]]
        row["revoke_url"] = reverse(f"{site_name}:registry_credential_revoke", args=[row["id"]])
    def action_url(name):
        return reverse(f"{site_name}:registry_integration_action", args=[integration.pk, name])

    serving = integration.is_serving
    may_revoke = may(request.user, "revoke-credential", integration)
    return {
        "rows": rows,
        "max_age_days": settings.SCP_CREDENTIAL_MAX_AGE_DAYS,
        "grace_choices": GRACE_CHOICES,
        "default_grace": DEFAULT_GRACE_SECONDS,
        "rotate_secret_url": action_url("rotate-secret")
        if serving and integration.auth_client_id and may(request.user, "rotate-secret", integration) else None,
        "rotate_api_key_url": action_url("rotate-api-key")
        if serving and integration.api_key_hash and may(request.user, "rotate-api-key", integration) else None,
        "may_revoke": may_revoke,
        "token_minutes": credentials.token_minutes(),
        "unregistered": serving and not rows and bool(integration.auth_client_id),
    }


@admin.register(Credential)
class CredentialAdmin(RoleScopedAdmin):
    """Every credential a person may see (those of the integrations they may see), read-only:
    rotation and revocation are on the integration's page, through the services."""

    list_display = ("integration", "kind", "prefix", "issued_at", "issued_by", "last_used_at", "expires_at",
                    "state", "aged", "revoked_at")
    list_filter = ("kind",)
    exclude = ("key_hash",)
    readonly_fields = ("integration", "kind", "prefix", "issued_at", "issued_by", "last_used_at", "expires_at",
                       "revoked_at", "revoked_reason")

    def scope(self, queryset, roles):
        visible = Integration.objects.visible_to(roles).values("pk")
        return queryset.filter(integration__in=visible).select_related("integration__tenant", "issued_by")

    @admin.display(description="state")
    def state(self, obj):
        return _STATE_LABELS[credentials.state_of(obj)]

    @admin.display(description="past max age", boolean=True)
    def aged(self, obj):
        return credentials.is_aged(obj)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("<int:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                     name="%s_%s_revoke" % info)] + super().get_urls()

    def revoke_view(self, request, object_id):
        """Revoke one previous credential before its grace ends: a confirmation, then the service."""
        credential = get_object_or_404(self.get_queryset(request), pk=object_id)
        integration = credential.integration
        back = reverse("admin:registry_integration_change", args=[integration.pk])
        form = RevokeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                credentials.integration_revoke_credential(
                    integration=integration, actor=request.user, credential=credential.pk,
                    reason=form.cleaned_data["reason"], request_id=request.request_id)
            except ApiError as exc:
                self.message_user(request, f"Not revoked: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{credential.get_kind_display()} revoked: {_stops(credential)}", messages.SUCCESS)
            return redirect(back)
        return TemplateResponse(request, "admin/credentials/revoke.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "credential": credential,
            "integration": integration, "state": _STATE_LABELS[credentials.state_of(credential)], "form": form,
            "change_url": back, "may_revoke": may(request.user, "revoke-credential", integration),
            "token_minutes": credentials.token_minutes(),
            "title": f"Revoke a previous credential of {integration.integration_name}",
        })


def _stops(credential):
    """What revoking it stops, honestly: an API key at once; a client secret's new tokens at
    once, while tokens already obtained with it run to their expiry (Keycloak does not revoke them)."""
    if credential.kind == CredentialKind.API_KEY:
        return "it no longer works."
    return (f"Keycloak refuses it from now on; tokens already issued with it remain valid until they expire, "
            f"at most {credentials.token_minutes()} minutes.")


class RevokeForm(forms.Form):
    reason = forms.CharField(required=False, max_length=200, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded in the audit trail.")
