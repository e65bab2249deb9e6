"""Issue #11 §8, property-based: the rules with many inputs (disclosure control of aggregates,
masking, the scope intersection) hold for every input Hypothesis finds, not for a few cases."""
import datetime
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from exchange.disclosure import hidden_cells, protect
from exchange.masking import REDACTED, mask
from lifecycle import services
from registry.models import DataContract, DataContractVersion, Partner
from lifecycle.demo import seed_reference_data
from scp_core.models import Tenant, Vertical

GROUPS = ["a", "b", "c", "d"]
cells_strategy = st.dictionaries(st.sampled_from(GROUPS), st.integers(min_value=1, max_value=9), min_size=1, max_size=4)


def _published(cells, threshold, order=str):
    """What a caller learns from the grouping and the total."""
    total = sum(cells.values())
    return {row["group"]: row["count"] for row in protect(cells, threshold, order)}, (total if total >= threshold else None)


def _consistent_worlds(published, total, threshold):
    """Every assignment of counts that an attacker who knows the rule, but not the secret
    order of secondary suppression, cannot tell from the truth."""
    hidden = [g for g, c in published.items() if c is None]
    visible = {g: c for g, c in published.items() if c is not None}
    ranges = [range(1, 10)] * len(hidden)
    for values in itertools.product(*ranges):
        world = {**visible, **dict(zip(hidden, values))}
        world_total = sum(world.values())
        if total is not None and world_total != total:
            continue
        orders = itertools.permutations(sorted(world))
        if any(_published(world, threshold, order=list(o).index) == (published, total) for o in orders):
            yield world


@settings(max_examples=150, deadline=None)
@given(cells=cells_strategy, threshold=st.integers(min_value=3, max_value=5))
def test_no_count_below_the_threshold_can_be_worked_out_from_the_grouping_and_the_total(cells, threshold):
    # (With a threshold of 2 the only count below it is 1, so showing that a small group
    # exists at all tells its count: thresholds start at 3.)
    published, total = _published(cells, threshold, order=lambda g: hash(("secret", g)))
    for group, count in cells.items():
        if count < threshold and group in published:
            assert published[group] is None  # primary suppression
            possible = {world[group] for world in _consistent_worlds(published, total, threshold)}
            assert count in possible and len(possible) >= 2, (cells, threshold, possible)


@given(cells=cells_strategy, threshold=st.integers(min_value=2, max_value=5))
def test_hidden_cells_are_none_or_at_least_two_with_room_for_any_small_count(cells, threshold):
    hidden = hidden_cells(cells, threshold)
    if hidden:
        assert len(hidden) >= 2
        assert sum(cells[g] for g in hidden) >= max(2 * threshold - 1, len(hidden) + threshold - 1)


@given(text=st.text(min_size=0, max_size=30), keep=st.integers(min_value=0, max_value=8))
def test_last_n_keeps_the_length_and_only_the_last_n_characters(text, keep):
    masked = mask(text, f"last:{keep}")
    assert len(masked) == len(text)
    shown = text[-keep:] if keep else ""
    assert masked.endswith(shown) and set(masked[: len(text) - len(shown)]) <= {"*"}


@given(value=st.one_of(st.text(), st.integers(), st.dates()))
def test_redact_and_hash_never_return_the_value(value):
    assert mask(value, "redact") == REDACTED
    hashed = mask(value, "hash")
    assert hashed == mask(value, "hash")  # stable, so records can still be linked
    assert len(hashed) == 64 and int(hashed, 16) >= 0 and hashed != str(value)


@given(day=st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2100, 1, 1)))
def test_year_keeps_the_year_only(day):
    assert mask(day, "year") == day.year
    assert mask(datetime.datetime.combine(day, datetime.time()), "year") == day.year


FIELDS = ["id", "given_name", "family_name", "national_id", "birth_date", "sex", "district"]


@pytest.mark.django_db
class ScopeIntersectionProperties(TestCase):
    """The effective read scope is the strictest intersection: template ∩ declared verticals ∩
    contract fields ∩ what the reviewer approved, whatever those are."""

    @classmethod
    def setUpTestData(cls):
        seed_reference_data()

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(contract_fields=st.sets(st.sampled_from(FIELDS), min_size=1),
           approved=st.sets(st.sampled_from(FIELDS)),
           declared=st.sets(st.sampled_from(["health", "education"]), min_size=1))
    def test_effective_read_fields_are_the_strictest_intersection(self, contract_fields, approved, declared):
        from django.contrib.auth import get_user_model

        users = get_user_model().objects
        contract = DataContract.objects.create(slug=f"prop-{DataContract.objects.count()}", name="property")
        version = DataContractVersion.objects.create(
            contract=contract, version=1, read_fields={"health": {f: "plain" for f in contract_fields}},
            write_schemas={"education": {}})
        integration = services.integration_create(
            actor=users.get(username="ke-admin"), tenant=Tenant.objects.get(code="ke"),
            partner=Partner.objects.get(slug="acme-health"), integration_name="prop",
            verticals=list(Vertical.objects.filter(code__in=declared)), data_contract=version, purpose_code="research")
        integration = services.integration_submit(integration=integration, actor=users.get(username="ke-admin"))
        if "health" in declared:
            narrowed = approved & contract_fields
            services.integration_review(integration=integration, actor=users.get(username="ke-health-owner"),
                                        vertical=Vertical.objects.get(code="health"), decision="approve",
                                        approved_fields=sorted(narrowed))
        effective = integration.effective_read_fields()
        assert set(effective) <= declared & {"health"}  # education is write-only in this contract
        if "health" in effective:
            expected = (approved & contract_fields) or contract_fields  # nothing ticked: all the contract allows
            assert set(effective["health"]) == expected
            assert set(effective["health"]) <= contract_fields
