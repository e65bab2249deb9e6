"""Records checked against their data contract's JSON Schema (draft 2020-12; `jsonschema` is
the reference and writes every error message).

Batch imports check every row, so the checking is compiled once per schema. A contract in the
common shape (an object of typed scalar properties: `type`, `required`,
`additionalProperties` true or false; per property one `type` and the string, number and
`format` keywords) becomes plain Python checks (`_compile`, a few hundred nanoseconds a row).
Any other schema that uses only keywords meaning the same in draft 7 is compiled by
fastjsonschema, with jsonschema's own format checks plugged in. Either fast check only says
valid or not: a row it accepts is valid, a row it rejects is judged and explained by
jsonschema, whose verdict stands. The compiled checks agree with jsonschema on every instance
(tests/test_contract_validation.py checks it with generated schemas and rows).
"""
import functools
import json
import numbers
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

# What `_compile` turns into plain Python (anything else: fastjsonschema or jsonschema).
_ANNOTATIONS = {"title", "description", "$schema"}
_COMPILED_ROOT = {"type", "properties", "required", "additionalProperties"} | _ANNOTATIONS
_COMPILED_PROPERTY = {"type", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                      "exclusiveMinimum", "exclusiveMaximum"} | _ANNOTATIONS
# jsonschema's draft 2020-12 type checks, spelled out (bool is an int in Python, not in JSON;
# an integer is also a float with no fraction).
_TYPE_CHECKS = {
    "string": "isinstance(v, str)",
    "integer": "(isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer())",
    "number": "(isinstance(v, Number) and not isinstance(v, bool))",
    "boolean": "isinstance(v, bool)",
    "null": "v is None",
}
# Each comparison written as jsonschema writes it (`instance < minimum` fails, and so on), so
# NaN and mixed int/float compare exactly as they do there.
_BOUNDS = {"minimum": "v < {}", "maximum": "v > {}", "exclusiveMinimum": "v <= {}", "exclusiveMaximum": "v >= {}"}


class ContractValidator:
    def __init__(self, schema):
        checker = FormatChecker()
        self._full = Draft202012Validator(schema, format_checker=checker)
        self._compiled = _compile(schema, checker)
        self._fast = None
        if self._compiled is None and _portable(schema):
            formats = {name: functools.partial(checker.conforms, format=name) for name in checker.checkers}
            draft7 = {k: v for k, v in schema.items() if k != "$schema"}
            try:
                self._fast = fastjsonschema.compile(draft7, formats=formats, use_default=False)
            except (fastjsonschema.JsonSchemaDefinitionException, re.error):
                self._fast = None  # jsonschema alone, which reports such a schema its own way

    def errors(self, data):
        """The violations of `data` as problem `errors` entries ({field, message}); empty when valid."""
        if self._compiled is not None:
            if self._compiled(data):
                return []
        elif self._fast is not None:
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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bound(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compile(schema, checker):
    """`schema` as one Python function data -> bool (valid or not), or None when it is not of
    the shape compiled here. Generated source, so a row costs one call and a few comparisons."""
    if not (isinstance(schema, dict) and set(schema) <= _COMPILED_ROOT and schema.get("type") == "object"):
        return None
    properties, required = schema.get("properties", {}), schema.get("required", [])
    additional = schema.get("additionalProperties", True)
    if not (isinstance(properties, dict) and isinstance(required, list) and all(isinstance(r, str) for r in required)
            and isinstance(additional, bool)):
        return None
    names = {"Number": numbers.Number}
    lines = ["def check(d):", "    if not isinstance(d, dict):", "        return False"]
    for name in dict.fromkeys(required):  # as jsonschema: a missing required one fails, present or not in properties
        lines += [f"    if {name!r} not in d:", "        return False"]
    if not additional:
        names["known"] = frozenset(properties)
        lines += ["    for k in d:", "        if k not in known:", "            return False"]
    for index, (name, spec) in enumerate(properties.items()):
        body = _compile_property(spec, index, checker, names)
        if body is None:
            return None
        lines += [f"    v = d.get({name!r}, missing)", "    if v is not missing:", *("        " + line for line in body)]
    lines.append("    return True")
    names["missing"] = object()
    namespace = dict(names)
    exec("\n".join(lines), namespace)  # noqa: S102 -- source built above from checked keywords only
    return namespace["check"]


def _compile_property(spec, index, checker, names):
    """The lines checking one property's value `v`, or None when `spec` is not compiled here."""
    if not (isinstance(spec, dict) and set(spec) <= _COMPILED_PROPERTY and spec.get("type") in _TYPE_CHECKS):
        return None
    kind = spec["type"]
    lines = [f"if not {_TYPE_CHECKS[kind]}:", "    return False"]
    for keyword in ("minLength", "maxLength"):
        if keyword in spec:
            if not _is_int(spec[keyword]):
                return None
            if kind == "string":  # on any other type jsonschema ignores it, and so does this
                compare = "<" if keyword == "minLength" else ">"
                names[f"{keyword}_{index}"] = spec[keyword]
                lines += [f"if len(v) {compare} {keyword}_{index}:", "    return False"]
    if "pattern" in spec:
        if not isinstance(spec["pattern"], str):
            return None
        try:
            re.compile(spec["pattern"])
        except re.error:
            return None
        if kind == "string":
            # jsonschema's re.search(pattern, v) is this compiled pattern's search
            names[f"pattern_{index}"] = re.compile(spec["pattern"]).search
            lines += [f"if not pattern_{index}(v):", "    return False"]
    for keyword, template in _BOUNDS.items():
        if keyword in spec:
            if not _is_bound(spec[keyword]):
                return None
            if kind in ("integer", "number"):
                names[f"{keyword}_{index}"] = spec[keyword]
                lines += [f"if {template.format(f'{keyword}_{index}')}:", "    return False"]
    if "format" in spec:
        if not isinstance(spec["format"], str):
            return None
        if spec["format"] in checker.checkers:  # an unknown format asserts nothing (as in jsonschema)
            # jsonschema calls the format's function on any type, and counts its declared
            # exceptions as "does not conform"; so does this.
            func, raises = checker.checkers[spec["format"]]
            names[f"format_{index}"], names[f"raises_{index}"] = func, raises
            lines += ["try:", f"    if not format_{index}(v):", "        return False",
                      f"except raises_{index}:", "    return False"]
    return lines
