"""The data-sharing agreement beside an integration's request (issue #14 item 4): what the
integration page and the sign-off screen show (templates/admin/lifecycle/_agreement.html)."""
from django import template
from django.urls import reverse

from lifecycle.agreement_gate import BEFORE_SIGN_OFF, agreement_gaps, agreement_in_force, fields_read, pending_agreements
from lifecycle.agreements import CLOSED_STATES, has_pending_agreement
from lifecycle.permissions import may
from registry.models import Integration

register = template.Library()


@register.simple_tag(takes_context=True)
def agreement_summary(context, integration):
    """The agreement in force (before the sign-off: the latest upload, the one to approve; after
    it: the approved or accepted one), uploads pending the umbrella authority's acceptance, the
    earlier ones (each with its download link), why the agreement in force does not let the
    integration be approved or run (if so), and the upload and accept links for whoever may use
    them. None on a page without an integration yet (the request form)."""
    if not isinstance(integration, Integration) or integration.pk is None or integration._state.adding:
        return None
    user = context["request"].user
    agreements = list(integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk"))
    for agreement in agreements:
        agreement.download_url = reverse("admin:registry_datasharingagreement_download", args=[agreement.pk])
    by_pk = {a.pk: a for a in agreements}
    in_force = agreement_in_force(integration)
    in_force = by_pk.get(in_force.pk) if in_force is not None else None
    pending = [by_pk[pk] for pk in pending_agreements(integration).values_list("pk", flat=True) if pk in by_pk]
    shown = {a.pk for a in pending} | ({in_force.pk} if in_force else set())
    may_upload = integration.status not in CLOSED_STATES and may(user, "upload-agreement", integration)
    may_accept = has_pending_agreement(integration) and may(user, "accept-agreement", integration)
    return {
        "latest": in_force,
        "pending": pending,
        "earlier": [a for a in agreements if a.pk not in shown],
        "gaps": agreement_gaps(integration, in_force),
        "before_sign_off": integration.status in BEFORE_SIGN_OFF,
        "fields_read": sorted(fields_read(integration)),
        "upload_url": reverse("integration-agreement-upload", args=[integration.pk]) if may_upload else None,
        "accept_url": (reverse("admin:registry_integration_action", args=[integration.pk, "accept-agreement"])
                       if may_accept else None),
    }
