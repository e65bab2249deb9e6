"""The partner's own pages (issue #14): a partner's users see their integrations, each with its
state and history, the reviewers' comments, exactly its contract and its API documentation
(Swagger UI served by the portal itself), example requests, its webhook deliveries with a
replay button, and its credentials.

Who reaches them: the partner's users for their partner's integrations; the tenant admin of the
integration's tenant, the umbrella authority, auditors and ROOT read them too. Anyone else is
answered 404, as if the integration did not exist. Replaying goes through
`exchange.deliveries.delivery_replay`, which checks `replay-delivery` and audits."""
import json

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.models import AuditEvent, AuditRecord
from exchange.contract_docs import describe_mask, example_requests, integration_contract, integration_openapi
from exchange.deliveries import REPLAYABLE, delivery_replay
from exchange.models import Delivery, DeliveryAttempt, DeliveryStatus, endpoint_display
from lifecycle.permissions import may
from lifecycle.roles import roles_of
from registry.models import Integration
from scp_core.errors import ApiError

from .admin.lifecycle import available_actions

DELIVERIES_PER_PAGE = 25
_HISTORY_EVENTS = (AuditEvent.INTEGRATION_CREATED, AuditEvent.INTEGRATION_TRANSITION)
# The API docs page loads nothing from elsewhere: scripts, styles and the document are the
# portal's own (drf-spectacular-sidecar's Swagger UI under /static/).
_DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
             "form-action 'none'")


def partner_integrations(roles):
    """The integrations these roles may open here (None: the pages are not theirs at all): the
    partner's own, the tenant admin's tenants', every one for the global roles. A vertical
    owner's view of an integration is its review, not these pages."""
    if not (roles.sees_everything or roles.partners or roles.admin_tenants):
        return None
    return Integration.objects.operated_by(roles)


def _integration_or_404(request, integration_id):
    scope = partner_integrations(roles_of(request.user))
    if scope is None:
        raise Http404("No such page.")
    return get_object_or_404(scope.select_related("tenant", "partner", "data_contract__contract"), pk=integration_id)


@require_GET
def partner_home_view(request):
    roles = roles_of(request.user)
    scope = partner_integrations(roles)
    if scope is None:
        raise Http404("No such page.")
    integrations = scope.select_related("tenant", "partner").prefetch_related("verticals").order_by(
        "partner__name", "tenant__code", "integration_name")
    return TemplateResponse(request, "admin/partner/home.html", {
        **admin.site.each_context(request),
        "title": "My integrations" if roles.partners else "Partners' integrations",
        "integrations": integrations,
        "own_partner_only": bool(roles.partners) and not (roles.sees_everything or roles.admin_tenants),
    })


@require_GET
def partner_integration_view(request, integration_id):
    integration = _integration_or_404(request, integration_id)
    contract = integration_contract(integration)
    status_filter = request.GET.get("delivery_status", "")
    deliveries = (
        Delivery.objects.filter(subscription__integration=integration)
        .select_related("event", "subscription")
        .prefetch_related(Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("attempted_at", "id")))
        .order_by("-event_id", "subscription_id")
    )
    if status_filter in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status_filter)
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("deliveries_page"))
    may_replay = may(request.user, "replay-delivery", integration)
    actions = dict(available_actions(request.user, integration))
    now = timezone.now()
    return TemplateResponse(request, "admin/partner/integration.html", {
        **admin.site.each_context(request),
        "title": integration.integration_name,
        "integration": integration,
        "contract": contract,
        "field_rows": [(vertical, field, rule, describe_mask(rule))
                       for vertical, fields in contract["read_fields"].items() for field, rule in fields.items()],
        "record_read_rows": [(vertical, record_type, rule)
                             for vertical, types in contract["read_records"].items()
                             for record_type, rule in sorted(types.items())],
        "write_rows": [(vertical, record_type, json.dumps(schema, indent=2, sort_keys=True))
                       for vertical, types in contract["write_schemas"].items()
                       for record_type, schema in sorted(types.items())],
        "examples": example_requests(integration, contract),
        "history": AuditRecord.objects.filter(integration=integration, event_type__in=_HISTORY_EVENTS)
                   .order_by("occurred_at", "id").only("occurred_at", "event_type", "actor", "details"),
        "versions": integration.history.order_by("-history_date").select_related("history_user")[:50],
        "reviews": integration.vertical_reviews.select_related("vertical", "reviewer").order_by("decided_at"),
        "subscriptions": [(s, endpoint_display(s.url)) for s in integration.subscriptions.order_by("created_at")],
        "deliveries": [(d, endpoint_display(d.subscription.url), may_replay and d.status in REPLAYABLE)
                       for d in page.object_list],
        "deliveries_page": page,
        "delivery_status": status_filter,
        "delivery_statuses": DeliveryStatus.choices,
        "may_replay": may_replay,
        "credentials": [(c, _credential_state(c, now)) for c in integration.credentials.select_related("issued_by")
                        .order_by("kind", "-issued_at")],
        "rotate_url": reverse("admin:registry_integration_action", args=[integration.pk, "rotate-secret"])
                      if "rotate-secret" in actions else None,
    })


def _credential_state(credential, now):
    if credential.revoked_at:
        return "revoked"
    if credential.expires_at and credential.expires_at <= now:
        return "expired"
    if credential.expires_at:
        return "in grace until rotation ends"
    return "current"


@require_GET
def partner_api_docs_view(request, integration_id):
    integration = _integration_or_404(request, integration_id)
    response = TemplateResponse(request, "admin/partner/api_docs.html", {
        "integration": integration,
        "title": f"API: {integration.integration_name}",
        "openapi_url": reverse("partner-openapi", args=[integration.pk]),
        "back_url": reverse("partner-integration", args=[integration.pk]),
    })
    response["Content-Security-Policy"] = _DOCS_CSP
    return response


@require_GET
def partner_openapi_view(request, integration_id):
    integration = _integration_or_404(request, integration_id)
    response = JsonResponse(integration_openapi(integration), json_dumps_params={"indent": 1})
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
def partner_delivery_replay_view(request, integration_id, delivery_id):
    integration = _integration_or_404(request, integration_id)
    delivery = get_object_or_404(Delivery.objects.select_related("subscription__integration"),
                                 pk=delivery_id, subscription__integration=integration)
    try:
        delivery_replay(delivery=delivery, actor=request.user, request_id=getattr(request, "request_id", ""))
    except ApiError as exc:
        messages.error(request, f"Not replayed: {exc.detail}")
    else:
        messages.success(request, f"Delivery {delivery.pk} is queued to be sent again.")
    return redirect(reverse("partner-integration", args=[integration.pk]) + "#webhooks")
