import datetime

import pytest

from exchange.masking import REDACTED, mask, minimize, validate_rule


def test_plain_keeps_the_value_and_stringifies_non_json_types():
    assert mask("Amina", "plain") == "Amina"
    assert mask(datetime.date(2001, 2, 3), "plain") == "2001-02-03"


def test_redact_hides_everything():
    assert mask("12345678", "redact") == REDACTED


def test_last_n_keeps_only_the_last_characters():
    assert mask("12345678", "last:4") == "****5678"
    assert mask("12", "last:4") == "12"


def test_year_only_keeps_the_year_of_a_date():
    assert mask(datetime.date(1990, 5, 17), "year") == 1990
    assert mask("1990-05-17", "year") == 1990


def test_keyed_hash_is_stable_and_depends_on_the_key(settings):
    first = mask("12345678", "hash")
    assert first == mask("12345678", "hash") and len(first) == 64 and "12345678" not in first
    settings.SCP_PSEUDONYM_KEY = "another-deployment"
    assert mask("12345678", "hash") != first


def test_none_stays_none_and_unknown_rules_are_refused():
    assert mask(None, "last:4") is None
    with pytest.raises(ValueError):
        mask("x", "reverse")
    with pytest.raises(ValueError):
        validate_rule("last:four")


def test_minimize_returns_only_the_contract_fields():
    class Obj:
        given_name, national_id, phone = "Amina", "12345678", "+254700000000"

    assert minimize(Obj(), {"given_name": "plain", "national_id": "last:2"}) == {
        "given_name": "Amina",
        "national_id": "******78",
    }
