import pytest
from django.core.management import call_command

from registry.models import DataContractVersion, IntegrationTemplate
from scp_core.models import Consent, ConsentStatus, Person

pytestmark = pytest.mark.django_db


def test_seed_demo_loads_the_contract_demo_data_and_is_idempotent():
    call_command("seed_demo", "--persons", "300")
    assert Person.objects.count() == 300
    assert set(Person.objects.values_list("tenant__code", flat=True).distinct()) == {"ke", "ug"}
    statuses = set(Consent.objects.values_list("status", flat=True))
    assert statuses == {ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN}
    # Some persons never gave consent for health.
    assert Person.objects.exclude(consents__vertical__code="health").exists()
    contract = DataContractVersion.objects.get(contract__slug="health-records-basic", version=1)
    assert contract.read_fields["health"]["national_id"] == "last:4"
    assert contract.read_fields["health"]["birth_date"] == "year"
    assert IntegrationTemplate.objects.get(slug="health-records-basic").verticals.get().code == "health"

    call_command("seed_demo", "--if-empty")
    assert Person.objects.count() == 300


def test_seeding_again_adds_new_persons():
    call_command("seed_demo", "--persons", "50")
    call_command("seed_demo", "--persons", "50")
    assert Person.objects.count() == 100
    assert Person.objects.values("national_id", "tenant").distinct().count() == 100
