"""The data-sharing agreement beside an integration's request (issue #14 item 4): what the
integration page and the sign-off screen show (templates/admin/lifecycle/_agreement.html)."""
from django import template
from django.urls import reverse

from lifecycle.agreement_gate import agreement_gaps, fields_read
from lifecycle.agreements import CLOSED_STATES
from lifecycle.permissions import may
from registry.models import Integration, IntegrationStatus

register = template.Library()

S = IntegrationStatus
_BEFORE_SIGN_OFF = {S.DRAFT, S.REQUESTED, S.REVIEWED}


@register.simple_tag(takes_context=True)
def agreement_summary(context, integration):
    """The latest agreement and the earlier ones (each with its download link), why it does not
    let the integration be approved (if so), and the upload link for whoever may upload. None on
    a page without an integration yet (the request form)."""
    if not isinstance(integration, Integration) or integration.pk is None or integration._state.adding:
        return None
    user = context["request"].user
    agreements = list(integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk"))
    for agreement in agreements:
        agreement.download_url = reverse("admin:registry_datasharingagreement_download", args=[agreement.pk])
    latest = agreements[0] if agreements else None
    may_upload = integration.status not in CLOSED_STATES and may(user, "upload-agreement", integration)
    return {
        "latest": latest,
        "earlier": agreements[1:],
        "gaps": agreement_gaps(integration, latest),
        "before_sign_off": integration.status in _BEFORE_SIGN_OFF,
        "fields_read": sorted(fields_read(integration)),
        "upload_url": reverse("integration-agreement-upload", args=[integration.pk]) if may_upload else None,
    }
