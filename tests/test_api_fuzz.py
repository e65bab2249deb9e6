"""Fuzzing the exchange API against its own OpenAPI document (schemathesis, small size):
with a valid partner token, no input yields a 5xx or a response that breaks the schema."""
import pytest
import requests
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import response_schema_conformance

from scp_core.models import ConsentStatus

from .conftest import make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES_PER_OPERATION = 25


def test_schema_is_served_only_to_authenticated_callers(live_server):
    assert requests.get(f"{live_server.url}/api/schema/", timeout=10).status_code == 401


def test_exchange_api_survives_fuzzing_against_its_schema(live_server, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="fuzzed")
    for i in range(3):
        make_person(demo["ke"], f"7700{i}", [(demo["health"], ConsentStatus.GRANTED)])
    auth = {"Authorization": f"Bearer {partner.token}"}
    document = requests.get(f"{live_server.url}/api/schema/?format=json", headers=auth, timeout=10)
    assert document.status_code == 200, document.text
    schema = from_dict(document.json())
    operations = [
        result.ok() for result in schema.get_all_operations()
        if not result.ok().path.startswith("/api/v1/governance/")
    ]
    assert {op.path for op in operations} >= {"/api/v1/persons/", "/api/v1/records/", "/api/v1/aggregates/"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(
                base_url=live_server.url,
                headers=auth,
                checks=[not_a_server_error, response_schema_conformance],
            )

        check()
