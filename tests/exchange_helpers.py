"""An Active integration with a real Keycloak client and token, for exchange tests."""
from dataclasses import dataclass

from lifecycle import services
from registry.models import Integration, IntegrationTemplate, Partner

from .agreement_helpers import sign_agreement
from .conftest import client_token


@dataclass
class Partnered:
    integration: Integration
    client_id: str
    secret: str
    token: str

    def refresh(self):
        self.integration.refresh_from_db()
        return self.integration

    def new_token(self):
        response = client_token(self.client_id, self.secret)
        response.raise_for_status()
        return response.json()["access_token"]


def activate(staff, demo, keycloak_clients, *, tenant="ke", name="exchange", verticals=("health",), **create):
    """Create and walk an integration to Active through the services, each step by its role
    (from the demo template unless `create` names a data_contract; `purpose_code` too)."""
    if "data_contract" not in create:
        create["template"] = IntegrationTemplate.objects.get(slug="health-records-basic", version=1)
    integration = services.integration_create(
        actor=staff[f"{tenant}-admin"], tenant=demo[tenant], partner=Partner.objects.get(slug="acme-health"),
        integration_name=name, verticals=[demo[v] for v in verticals], **create,
    )
    keycloak_clients.append(integration.client_id_for_keycloak)
    integration = services.integration_submit(integration=integration, actor=staff[f"{tenant}-admin"])
    for vertical in verticals:
        integration = services.integration_review(
            integration=integration, actor=staff[f"{tenant}-{vertical}-owner"], vertical=demo[vertical], decision="approve"
        )
    sign_agreement(integration, staff[f"{tenant}-admin"])  # no sign-off without one
    integration = services.integration_approve(integration=integration, actor=staff["umbrella"])
    integration, credentials = services.integration_activate(integration=integration, actor=staff[f"{tenant}-admin"])
    token = client_token(credentials["client_id"], credentials["client_secret"]).json()["access_token"]
    return Partnered(integration, credentials["client_id"], credentials["client_secret"], token)
