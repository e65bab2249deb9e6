import datetime

import pytest
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from scp_core.models import Consent, ConsentStatus, Person
from lifecycle.consent import consent_record
from scp_core.errors import PermissionDeniedError

from .conftest import make_person

pytestmark = pytest.mark.django_db
GRANTED, WITHDRAWN = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN


def _visible(vertical, at=None):
    return set(Person.objects.with_consent_in_effect(vertical, at=at).values_list("national_id", flat=True))


def test_withdrawal_effective_now_blocks_at_once_and_is_audited(demo, root_user):
    health = demo["health"]
    person = make_person(demo["ke"], "100", [(health, GRANTED)])
    assert _visible(health) == {"100"}
    consent_record(person=person, vertical=health, status=WITHDRAWN, actor=root_user)
    assert _visible(health) == set()
    audit = AuditRecord.objects.get(event_type=AuditEvent.CONSENT_CHANGED)
    assert audit.details["prior_status"] == GRANTED and audit.details["status"] == WITHDRAWN
    assert Consent.objects.get(person=person).history.count() == 2


def test_future_withdrawal_keeps_the_grant_until_it_takes_effect(demo, root_user):
    health = demo["health"]
    person = make_person(demo["ke"], "200", [(health, GRANTED)])
    when = timezone.now() + datetime.timedelta(hours=1)
    consent_record(person=person, vertical=health, status=WITHDRAWN, actor=root_user, effective_at=when)
    assert _visible(health) == {"200"}
    assert _visible(health, at=when) == set()


def test_future_grant_is_not_in_effect_yet(demo, root_user):
    health = demo["health"]
    person = make_person(demo["ke"], "300", [])
    when = timezone.now() + datetime.timedelta(hours=1)
    consent_record(person=person, vertical=health, status=GRANTED, actor=root_user, effective_at=when)
    assert _visible(health) == set()
    assert _visible(health, at=when + datetime.timedelta(seconds=1)) == {"300"}


def test_consent_is_per_vertical(demo, root_user):
    person = make_person(demo["ke"], "400", [(demo["education"], GRANTED)])
    assert _visible(demo["health"]) == set()
    assert _visible(demo["education"]) == {"400"}
    assert person.consents.count() == 1


def test_only_authorised_staff_change_consent(demo):
    from django.contrib.auth import get_user_model

    person = make_person(demo["ke"], "500", [(demo["health"], GRANTED)])
    outsider = get_user_model().objects.get(username="partner-user")
    with pytest.raises(PermissionDeniedError):
        consent_record(person=person, vertical=demo["health"], status=WITHDRAWN, actor=outsider)
    assert _visible(demo["health"]) == {"500"}
