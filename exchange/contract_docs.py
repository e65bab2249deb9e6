"""The API documentation of exactly one integration's contract (issue #14): the exchange part of
the project's OpenAPI document, narrowed to its verticals, the person fields it reads with their
masks, the record types it may write with their data schemas and those it may read; and the
same contract as plain data for the partner's pages, with example requests."""
import copy
import functools
import json

from django.conf import settings
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator

from registry.models import Integration
from scp_core.models import Person

from .models import EventType

MASKS = {
    "plain": "as stored",
    "redact": 'always "***"',
    "year": "the year only (an integer)",
    "hash": "a keyed SHA-256 pseudonym (64 hex characters), the same for the same value across this deployment",
}
_PERSON_PLAIN_TYPES = {"id": {"type": "string", "format": "uuid"}, "birth_date": {"type": "string", "format": "date"}}
_PATH_PREFIX = "/api/v1/"


def describe_mask(rule):
    """A masking rule (exchange.masking) in words."""
    if rule.startswith("last:"):
        return f"only the last {rule[5:]} characters, the others as *"
    return MASKS.get(rule, rule)


def integration_contract(integration):
    """What the integration may read and write, as the exchange enforces it.

    Once activated this is the scope fixed then (`read_scope`, `record_scope`, what
    `exchange.scope.DataScope` serves); before, what activation would fix now (the contract
    narrowed by the reviewers). Returns {"verticals", "read_fields": {vertical: {field: rule}},
    "read_records": {vertical: {type: {"fields", "other_writers"}}}, "write_schemas":
    {vertical: {type: JSON Schema}}, "fixed": bool}."""
    fixed = bool(integration.auth_client_id)
    verticals = integration.vertical_codes()
    read_fields = integration.read_scope if fixed else integration.effective_read_fields()
    read_records = integration.record_scope if fixed else integration.effective_record_read()
    write_schemas = {v: integration.writable_record_types(v) for v in verticals}
    return {
        "verticals": verticals,
        # jsonb keeps no key order: the id first, then by name, the same on every page.
        "read_fields": {v: {k: f[k] for k in sorted(f, key=lambda k: (k != "id", k))}
                        for v, f in sorted(read_fields.items()) if f},
        "read_records": {v: dict(t) for v, t in sorted(read_records.items()) if t},
        "write_schemas": {v: dict(t) for v, t in write_schemas.items() if t},
        "fixed": fixed,
    }


def data_fields(schema):
    """The fields of a record type's data in a stable, readable order: the required ones as the
    schema lists them (an array keeps its order; jsonb does not keep the properties'), then the rest."""
    required = [f for f in schema.get("required", []) if f in schema.get("properties", {})]
    return required + sorted(set(schema.get("properties", {})) - set(required))


def example_data(schema):
    """A value that a JSON Schema (of a record's data) accepts, for the examples."""
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: example_data(schema["properties"][name]) for name in data_fields(schema)}
    if kind == "array":
        return [example_data(schema.get("items", {}))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if schema.get("format") == "date":
        return "2026-01-15"
    if schema.get("format") == "date-time":
        return "2026-01-15T09:30:00Z"
    return "text"


def example_requests(integration, contract=None):
    """curl examples of the calls this integration may make, against the real base URLs:
    [(title, command)]. The client secret is never shown: the partner keeps it in its own
    environment variable."""
    contract = contract or integration_contract(integration)
    base = settings.SCP_PORTAL_URL.rstrip("/")
    client_id = integration.auth_client_id or "CLIENT_ID_ISSUED_AT_ACTIVATION"
    read_vertical = next(iter(contract["read_fields"]), None) or (contract["verticals"] or ["VERTICAL"])[0]
    auth = '-H "Authorization: Bearer $TOKEN"'
    examples = [
        ("Access token (client credentials; the secret was shown once, at activation or rotation)",
         f"TOKEN=$(curl -s -X POST {settings.KEYCLOAK_TOKEN_URL} \\\n"
         f"  -d grant_type=client_credentials -d client_id={client_id} \\\n"
         f'  --data-urlencode client_secret="$SCP_CLIENT_SECRET" | jq -r .access_token)'),
        ("Persons (list, cursor-paged)", f'curl -s {auth} "{base}{_PATH_PREFIX}persons/?vertical={read_vertical}"'),
        ("One person", f'curl -s {auth} "{base}{_PATH_PREFIX}persons/$PERSON_ID/?vertical={read_vertical}"'),
    ]
    for vertical, types in contract["write_schemas"].items():
        for record_type, schema in sorted(types.items()):
            body = {"person_id": "$PERSON_ID", "vertical": vertical, "record_type": record_type,
                    "data": example_data(schema)}
            examples.append((
                f"Write a record: {record_type} ({vertical}); $RECORD_KEY is your own id of this write "
                "(sent again with the same key, it is answered once, never written twice)",
                f"curl -s -X POST {auth} -H 'Content-Type: application/json' \\\n"
                f'  -H "Idempotency-Key: $RECORD_KEY" "{base}{_PATH_PREFIX}records/" \\\n'
                f"  -d '{json.dumps(body, indent=2)}'".replace('"$PERSON_ID"', '"\'"$PERSON_ID"\'"'),
            ))
            columns = ",".join(["person_id", *data_fields(schema)])
            examples.append((
                f"Import a file of {record_type} records (CSV header: {columns})",
                f"curl -s -X POST {auth} \\\n  -F file=@{record_type}.csv -F vertical={vertical} "
                f'-F record_type={record_type} "{base}{_PATH_PREFIX}imports/"',
            ))
    if contract["read_fields"]:
        examples.append((
            "Export (then poll the job and download the file when it is completed)",
            f"curl -s -X POST {auth} -H 'Content-Type: application/json' \\\n"
            f"  -d '{{\"vertical\": \"{read_vertical}\", \"format\": \"ndjson\"}}' \"{base}{_PATH_PREFIX}exports/\"\n"
            f'curl -s {auth} "{base}{_PATH_PREFIX}exports/$JOB_ID/"\n'
            f'curl -s {auth} -o export.ndjson "{base}{_PATH_PREFIX}exports/$JOB_ID/download/"',
        ))
    return examples


@functools.lru_cache(maxsize=1)
def _exchange_schema():
    """The project's OpenAPI document of the exchange routes only (made once per process: it
    depends on the code alone)."""
    generator = SchemaGenerator(patterns=[path(_PATH_PREFIX.strip("/") + "/", include("exchange.urls"))])
    return generator.get_schema(request=None, public=True)


def integration_openapi(integration: Integration):
    """The OpenAPI 3 document of the exchange as this one integration may use it."""
    contract = integration_contract(integration)
    doc = copy.deepcopy(_exchange_schema())
    schemas = doc["components"]["schemas"]
    read_verticals = sorted(contract["read_fields"])
    write_verticals = sorted(contract["write_schemas"])
    writable = sorted({t for types in contract["write_schemas"].values() for t in types})
    readable = sorted({t for types in contract["read_records"].values() for t in types})

    doc["info"] = {
        "title": f"SCP exchange API: {integration.integration_name}",
        "version": doc["info"].get("version", "1.0.0"),
        "description": _description(integration, contract),
    }
    doc["servers"] = [{"url": settings.SCP_PORTAL_URL.rstrip("/"), "description": "SCP Integration Layer"}]
    doc["x-scp-integration"] = {
        "integration_id": str(integration.pk), "tenant": integration.tenant.code, "partner": integration.partner.slug,
        "data_contract": integration.data_contract.ref, "client_id": integration.auth_client_id,
        "token_url": settings.KEYCLOAK_TOKEN_URL, "scope_fixed_at_activation": contract["fixed"],
    }
    doc["x-scp-read-scope"] = contract["read_fields"]
    doc["x-scp-record-scope"] = contract["read_records"]

    # Only what it may call: no writes without a writable record type, no record reads
    # without a readable one.
    if not writable:
        doc["paths"].pop(f"{_PATH_PREFIX}records/", {}).pop("post", None)
        for route in [p for p in doc["paths"] if p.startswith(f"{_PATH_PREFIX}imports/")]:
            del doc["paths"][route]
        for name in ("RecordPush", "ImportUpload"):
            schemas.pop(name, None)
    if not readable:
        doc["paths"].get(f"{_PATH_PREFIX}records/", {}).pop("get", None)
    doc["paths"] = {route: item for route, item in doc["paths"].items() if any(k in item for k in _METHODS)}

    for item in doc["paths"].values():
        for operation in (item[m] for m in _METHODS if m in item):
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "vertical" and parameter.get("in") == "query":
                    parameter["schema"] = {"type": "string", "enum": contract["verticals"]}
                if parameter.get("name") == "integration_id" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "format": "uuid", "enum": [str(integration.pk)]}

    schemas["MinimizedPerson"] = _person_schema(contract["read_fields"])
    if "ExportRequest" in schemas:
        schemas["ExportRequest"]["properties"]["vertical"] = {"type": "string", "enum": read_verticals}
    if "SubscriptionCreate" in schemas:
        schemas["SubscriptionCreate"]["properties"]["event_types"]["items"] = {
            "type": "string", "enum": list(EventType.values)}

    for vertical, types in contract["write_schemas"].items():
        for record_type, schema in types.items():
            schemas[_ref_name("RecordData", vertical, record_type)] = {
                **copy.deepcopy(schema),
                "description": f"The `data` of a `{record_type}` record written in `{vertical}` (validated exactly).",
            }
    for vertical, types in contract["read_records"].items():
        for record_type, rule in types.items():
            schemas[_ref_name("RecordRead", vertical, record_type)] = _record_read_schema(
                vertical, record_type, rule, contract["write_schemas"].get(vertical, {}).get(record_type, {}))
    if writable:
        _narrow_push(doc, schemas, contract, write_verticals, writable)
    if "Record" in schemas:
        refs = [{"$ref": f"#/components/schemas/{_ref_name('RecordRead', v, t)}"}
                for v, types in contract["read_records"].items() for t in sorted(types)]
        schemas["Record"]["properties"]["record_type"] = {"type": "string", "enum": sorted(set(readable) | set(writable))}
        schemas["Record"]["properties"]["vertical"] = {"type": "string", "enum": contract["verticals"]}
        if refs:
            schemas["Record"]["properties"]["data"] = {
                "description": "Read: only the readable fields of the record type, each masked by its rule.",
                "anyOf": refs}
    return doc


_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _ref_name(kind, vertical, record_type):
    return f"{kind}.{vertical}.{record_type}"


def _description(integration, contract):
    lines = [
        f"The exchange API as the integration **{integration.integration_name}** "
        f"({integration.tenant.code}, {integration.partner.name}) may use it under the data contract "
        f"`{integration.data_contract.ref}`: only its verticals, the person fields it reads with their "
        "masks, and the record types it may write and read. Anything else is refused.",
        "",
        f"Access tokens: client-credentials grant at `{settings.KEYCLOAK_TOKEN_URL}` with the client id "
        f"`{integration.auth_client_id or '(issued at activation)'}`.",
    ]
    if not contract["fixed"]:
        lines += ["", "Not activated yet: the scope shown is what activation would fix now."]
    for vertical, fields in contract["read_fields"].items():
        lines += ["", f"Person fields in `{vertical}`:", ""]
        lines += [f"- `{field}`: {rule} ({describe_mask(rule)})" for field, rule in fields.items()]
    return "\n".join(lines)


def _person_field_schema(field, rule):
    if rule == "year":
        return {"type": "integer"}
    if rule == "hash":
        return {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    if rule == "redact":
        return {"type": "string", "enum": ["***"]}
    if rule == "plain":
        return dict(_PERSON_PLAIN_TYPES.get(field, {"type": "string"}))
    return {"type": "string"}


def _person_schema(read_fields):
    """The person as this integration reads it: only its fields, each with its mask per vertical."""
    properties, masks = {}, {}
    for vertical, fields in read_fields.items():
        for field, rule in fields.items():
            masks.setdefault(field, {})[vertical] = rule
    for field in sorted(masks, key=lambda f: (f != "id", f)):
        by_vertical = masks[field]
        variants = []
        for rule in by_vertical.values():
            schema = _person_field_schema(field, rule)
            if schema not in variants:
                variants.append(schema)
        prop = variants[0] if len(variants) == 1 else {"anyOf": variants}
        label = Person._meta.get_field(field).verbose_name if field in {f.name for f in Person._meta.fields} else field
        prop["description"] = f"{label}; masking: " + "; ".join(
            f"{vertical}: {rule} ({describe_mask(rule)})" for vertical, rule in sorted(by_vertical.items()))
        prop["x-scp-masks"] = dict(sorted(by_vertical.items()))
        properties[field] = prop
    required = sorted(f for f in masks if len(masks[f]) == len(read_fields))
    schema = {
        "type": "object",
        "description": "A person as this integration's contract lets it see them: only these fields, each masked "
                       "by its rule in the vertical asked for.",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _record_read_schema(vertical, record_type, rule, write_schema):
    properties = {}
    for field, masking in rule.get("fields", {}).items():
        if masking == "plain":
            prop = copy.deepcopy(write_schema.get("properties", {}).get(field, {}))
        else:
            prop = _person_field_schema(field, masking)
        prop["description"] = f"masking: {masking} ({describe_mask(masking)})"
        prop["x-scp-mask"] = masking
        properties[field] = prop
    others = "including other integrations' records" if rule.get("other_writers") else "only the records it wrote"
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": f"The readable `data` of `{record_type}` records in `{vertical}` ({others})."}


def _narrow_push(doc, schemas, contract, write_verticals, writable):
    refs = [{"$ref": f"#/components/schemas/{_ref_name('RecordData', v, t)}"}
            for v, types in contract["write_schemas"].items() for t in sorted(types)]
    if "RecordPush" in schemas:
        props = schemas["RecordPush"]["properties"]
        props["vertical"] = {"type": "string", "enum": write_verticals}
        props["record_type"] = {"type": "string", "enum": writable}
        props["data"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
        operation = doc["paths"].get(f"{_PATH_PREFIX}records/", {}).get("post")
        if operation:
            operation["requestBody"]["content"]["application/json"]["examples"] = {
                f"{v}.{t}": {"summary": f"{t} in {v}", "value": {
                    "person_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "vertical": v, "record_type": t,
                    "data": example_data(schema)}}
                for v, types in contract["write_schemas"].items() for t, schema in sorted(types.items())
            }
    if "ImportUpload" in schemas:
        props = schemas["ImportUpload"]["properties"]
        props["vertical"] = {"type": "string", "enum": write_verticals}
        props["record_type"] = {"type": "string", "enum": writable}
        props["file"]["description"] = "CSV with a header row (`person_id` and the record type's data fields) or " \
            "NDJSON; columns per type: " + "; ".join(
                f"{t}: " + ",".join(["person_id", *data_fields(schema)])
                for types in contract["write_schemas"].values() for t, schema in sorted(types.items()))
