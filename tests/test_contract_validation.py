"""Contract validation: the fast validators never judge otherwise than jsonschema (the reference)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    assert validator._compiled is not None  # the contract's schema is compiled to plain Python checks
    errors = validator.errors(row)
    assert (errors == []) == reference.is_valid(row)
    assert all(set(error) == {"field", "message"} for error in errors)


def test_a_schema_with_2020_12_only_keywords_is_checked_by_jsonschema_alone():
    schema = {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}
    validator = ContractValidator(schema)
    assert validator._fast is None
    assert validator.errors([1]) == []
    assert validator.errors([1, 2]) != []


def test_schemas_not_of_the_compiled_shape_take_fastjsonschema_or_jsonschema():
    nested = {"type": "object", "properties": {"when": {"type": "object", "properties": {"d": {"type": "string"}}}}}
    enum = {"type": "object", "properties": {"v": {"type": "string", "enum": ["a"]}}}
    for schema in (nested, enum, {"type": "array"}, {"properties": {"a": {"type": "integer"}}}):
        validator = ContractValidator(schema)
        assert validator._compiled is None and validator._fast is not None, schema
    validator = ContractValidator(enum)
    assert validator.errors({"v": "a"}) == [] and validator.errors({"v": "b"})[0]["field"] == "v"


# --- the compiled checks against jsonschema, on generated schemas and rows ------------------

_NAMES = ["vaccine", "dose", "date", "a"]
_BOUND = st.one_of(st.integers(-2, 2), st.sampled_from([0.5, 1.0, -0.0, 1e300]), st.floats(-3, 3, allow_nan=False))
_PROPERTY = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from(["string", "integer", "number", "boolean", "null"]),
    st.fixed_dictionaries({}, optional={
        "minLength": st.integers(0, 4), "maxLength": st.integers(0, 4),
        "pattern": st.sampled_from([r"^\d{4}-\d{2}-\d{2}$", "^[A-Z]{3}$", "a", "^$", r"\d"]),
        "format": st.sampled_from(["date", "email", "ipv4", "uuid", "no-such-format"]),
        "minimum": _BOUND, "maximum": _BOUND, "exclusiveMinimum": _BOUND, "exclusiveMaximum": _BOUND,
        "title": st.just("t"),
    }),
)
_SCHEMA = st.builds(
    lambda properties, required, extra: {"type": "object", "properties": properties,
                                         "required": [n for n in required if n in properties or n == "other"], **extra},
    st.dictionaries(st.sampled_from(_NAMES), _PROPERTY, max_size=4),
    st.lists(st.sampled_from([*_NAMES, *_NAMES, "other"]), max_size=3),
    st.fixed_dictionaries({}, optional={"additionalProperties": st.booleans(), "description": st.just("d")}),
)
_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.integers(), st.floats(), st.text(max_size=6),
    st.sampled_from([1.0, 2.0, -0.0, 0.5, "2026-05-17", "2026-02-30", "2026-01-01\n", "ABC", "a@b.c", "127.0.0.1", "", "aaaa"]),
)
# Values near each type and its bounds, so most generated rows are valid or miss by one check.
_NEAR = {
    "string": st.one_of(st.text(max_size=6), st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"), st.sampled_from(
        ["2026-05-17", "2026-02-30", "2026-01-01\n", "ABC", "AB", "a@b.c", "127.0.0.1", "", "a", "aaaa", "0000-00-00",
         "2b1e6f2c-4f7e-4d55-a4c4-0f2d0b1d7a11"])),
    "integer": st.one_of(st.integers(-3, 3), st.sampled_from([1.0, 2.0, -0.0, 0.5, 3.0, float("nan"), float("inf"), 10**30])),
    "number": st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, -0.0]), st.floats(-3, 3), st.sampled_from([float("nan"), float("inf"), 1e300, 0.5])),
    "boolean": st.booleans(),
    "null": st.none(),
}


@st.composite
def _row_for(draw, schema):
    """A row for `schema`: each property present with a value near its type (most often),
    missing, or of any type; sometimes a property the schema does not name; sometimes no object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2)))
    row = {}
    for name, spec in schema["properties"].items():
        mode = draw(st.integers(0, 9))
        if mode < 5:
            row[name] = draw(_NEAR[spec["type"]])
        elif mode < 7:  # at or next to one of its own limits
            limits = [spec[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in spec]
            lengths = [spec[k] for k in ("minLength", "maxLength") if k in spec]
            if limits and spec["type"] in ("integer", "number"):
                row[name] = draw(st.sampled_from(limits)) + draw(st.sampled_from([0, 0, -1, 1, 0.5]))
            elif lengths and spec["type"] == "string":
                row[name] = "2" * max(0, draw(st.sampled_from(lengths)) + draw(st.sampled_from([0, 0, -1, 1])))
            else:
                row[name] = draw(_NEAR[spec["type"]])
        elif mode < 9:
            row[name] = draw(_SCALAR)
    if draw(st.integers(0, 4)) == 0:
        row["other"] = draw(_SCALAR)
    return row


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_SCHEMA, data=st.data())
def test_the_compiled_checks_agree_with_jsonschema_on_every_row(schema, data):
    reference = Draft202012Validator(schema, format_checker=FormatChecker())
    validator = ContractValidator(schema)
    assert validator._compiled is not None, schema
    for row in data.draw(st.lists(_row_for(schema), min_size=1, max_size=10)):
        assert validator._compiled(row) == reference.is_valid(row), (schema, row)
        assert (validator.errors(row) == []) == reference.is_valid(row)


def test_the_contract_schema_is_compiled_and_rejects_each_kind_of_bad_row():
    check = validator_for(IMMUNIZATION_SCHEMA)._compiled
    assert check({"vaccine": "OPV", "dose": 2, "date": "2026-05-17"}) and check({"vaccine": "OPV", "dose": 2.0, "date": "2026-05-17"})
    assert [row for row in ROWS if check(row)] == [ROWS[0], ROWS[1]]


def test_nested_subschemas_take_the_fast_path_and_malformed_ones_do_not():
    validator = ContractValidator({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
                                   "additionalProperties": {"type": "integer"}})
    assert validator._fast is not None
    assert validator.errors({"code": "abc"}) and not validator.errors({"code": "ABC", "n": 1})
    assert ContractValidator({"type": "object", "properties": "not a map"})._fast is None
