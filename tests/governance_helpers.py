"""Walk integrations to a given state, each step by its rightful role (through the services)."""
from lifecycle import services
from registry.models import Integration, IntegrationStatus, IntegrationTemplate, Partner

from .agreement_helpers import sign_agreement

S = IntegrationStatus

# The path to each state, as (action, actor username, extra kwargs).
_PATH = {
    S.DRAFT: [],
    S.REQUESTED: [("submit", "ke-admin", {})],
    S.REVIEWED: [("submit", "ke-admin", {}), ("review", "ke-health-owner", {"decision": "approve"})],
}
_PATH[S.APPROVED] = _PATH[S.REVIEWED] + [("approve", "umbrella", {})]
_PATH[S.REJECTED] = _PATH[S.REVIEWED] + [("reject", "umbrella", {"reason": "not needed"})]
_PATH[S.ACTIVE] = _PATH[S.APPROVED] + [("activate", "ke-admin", {})]
_PATH[S.RESTRICTED] = _PATH[S.ACTIVE] + [("restrict", "ke-admin", {})]
_PATH[S.SUSPENDED] = _PATH[S.ACTIVE] + [("suspend", "ke-admin", {"reason": "violation"})]
_PATH[S.DEPRECATED] = _PATH[S.ACTIVE] + [("deprecate", "ke-admin", {})]
_PATH[S.ARCHIVED] = _PATH[S.DEPRECATED] + [("archive", "ke-admin", {})]


def new_draft(staff, demo, *, by="ke-admin", name="governed"):
    return services.integration_create(
        actor=staff[by],
        tenant=demo["ke"],
        partner=Partner.objects.get(slug="acme-health"),
        integration_name=name,
        verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic", version=1),
    )


def run_action(action, integration, actor, demo, **kwargs):
    """Call the one service of `action` with the arguments it needs."""
    if action == "review":
        kwargs.setdefault("vertical", demo["health"])
        kwargs.setdefault("decision", "approve")
    if action == "reject":
        kwargs.setdefault("reason", "not needed")
    if action == "deprecate" and "replacement" not in kwargs:
        kwargs["replacement"] = new_draft_from(integration, demo)
    service = getattr(services, f"integration_{action.replace('-', '_')}")
    outcome = service(integration=integration, actor=actor, **kwargs)
    return outcome[0] if isinstance(outcome, tuple) else outcome


def new_draft_from(integration, demo):
    return Integration.objects.create(
        tenant=integration.tenant,
        partner=integration.partner,
        integration_name="replacement",
        template=integration.template,
        data_contract=integration.data_contract,
        created_by=integration.created_by,
    )


def walk_to(state, staff, demo, keycloak_clients, **draft_kwargs):
    integration = new_draft(staff, demo, **draft_kwargs)
    keycloak_clients.append(integration.client_id_for_keycloak)
    sign_agreement(integration, staff["ke-admin"])  # so that the sign-off on the way is possible
    for action, username, kwargs in _PATH[state]:
        integration = run_action(action, integration, staff[username], demo, **kwargs)
    assert integration.status == state
    return integration
