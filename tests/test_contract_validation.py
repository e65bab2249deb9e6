"""Contract validation: the fast validator never accepts what jsonschema (the reference) rejects."""
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from exchange.validation import ContractValidator, validator_for
from lifecycle.demo import IMMUNIZATION_SCHEMA

ROWS = [
    {"vaccine": "OPV", "dose": 2, "date": "2026-05-17"},
    {"vaccine": "OPV", "dose": 1.0, "date": "2026-05-17"},
    {"vaccine": "OPV", "dose": True, "date": "2026-05-17"},
    {"vaccine": "OPV", "dose": 2, "date": "2026-02-30"},
    {"vaccine": "OPV", "dose": 2, "date": "2026-01-01\n"},
    {"vaccine": "", "dose": 2, "date": "2026-01-01"},
    {"vaccine": "OPV", "dose": 0, "date": "2026-01-01"},
    {"vaccine": "OPV", "dose": float("nan"), "date": "2026-01-01"},
    {"vaccine": "OPV", "dose": 2, "date": "2026-01-01", "extra": 1},
    {"vaccine": "OPV", "dose": 2},
    ["OPV"], "OPV", None,
]


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_fast_validation_agrees_with_jsonschema(row):
    reference = Draft202012Validator(IMMUNIZATION_SCHEMA, format_checker=FormatChecker())
    validator = validator_for(IMMUNIZATION_SCHEMA)
    assert validator._fast is not None  # the contract's schema takes the fast path
    errors = validator.errors(row)
    assert (errors == []) == reference.is_valid(row)
    assert all(set(error) == {"field", "message"} for error in errors)


def test_a_schema_with_2020_12_only_keywords_is_checked_by_jsonschema_alone():
    schema = {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}
    validator = ContractValidator(schema)
    assert validator._fast is None
    assert validator.errors([1]) == []
    assert validator.errors([1, 2]) != []


def test_nested_subschemas_take_the_fast_path_and_malformed_ones_do_not():
    validator = ContractValidator({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
                                   "additionalProperties": {"type": "integer"}})
    assert validator._fast is not None
    assert validator.errors({"code": "abc"}) and not validator.errors({"code": "ABC", "n": 1})
    assert ContractValidator({"type": "object", "properties": "not a map"})._fast is None
