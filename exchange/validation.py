"""Records checked against their data contract's JSON Schema (draft 2020-12; `jsonschema` is
the reference and writes every error message).

Batch imports check every row, so a schema that uses only keywords meaning the same in draft 7
is also compiled by fastjsonschema (about 8× faster here), with jsonschema's own format checks
plugged in. A row the fast validator accepts is valid; a row it rejects is judged and explained
by jsonschema, whose verdict stands.
"""
import functools
import json
import re

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker

# Keywords whose meaning is the same in draft 7 (fastjsonschema) and draft 2020-12.
_SAME_IN_DRAFT_7 = {
    "type", "properties", "required", "additionalProperties", "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "enum", "const",
    "items", "minItems", "maxItems", "uniqueItems", "title", "description", "$schema",
}
_SUBSCHEMA_MAPS = {"properties"}
_SUBSCHEMAS = {"additionalProperties", "items"}


class ContractValidator:
    def __init__(self, schema):
        checker = FormatChecker()
        self._full = Draft202012Validator(schema, format_checker=checker)
        self._fast = None
        if _portable(schema):
            formats = {name: functools.partial(checker.conforms, format=name) for name in checker.checkers}
            draft7 = {k: v for k, v in schema.items() if k != "$schema"}
            try:
                self._fast = fastjsonschema.compile(draft7, formats=formats, use_default=False)
            except (fastjsonschema.JsonSchemaDefinitionException, re.error):
                self._fast = None  # jsonschema alone, which reports such a schema its own way

    def errors(self, data):
        """The violations of `data` as problem `errors` entries ({field, message}); empty when valid."""
        if self._fast is not None:
            try:
                self._fast(data)
                return []
            except fastjsonschema.JsonSchemaException:
                pass
        return [
            {"field": ".".join(str(p) for p in error.absolute_path) or None, "message": error.message}
            for error in sorted(self._full.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        ]


def validator_for(schema):
    """A validator of `schema`, compiled once per process per distinct schema."""
    return _cached(json.dumps(schema, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _cached(schema_json):
    return ContractValidator(json.loads(schema_json))


def _portable(schema):
    """Whether every keyword of `schema` (recursively) means the same in draft 7."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _SAME_IN_DRAFT_7:
        return False
    if isinstance(schema.get("items"), list):  # tuple validation: draft 7 only
        return False
    maps = [schema.get(key, {}) for key in _SUBSCHEMA_MAPS]
    return (all(isinstance(m, dict) and all(_portable(sub) for sub in m.values()) for m in maps)
            and all(_portable(schema[key]) for key in _SUBSCHEMAS if key in schema))
