"""The disclosure ledger (issue #13): what each release of persons' data gave to whom.

A release is written with its audit record, in the same statement batch: the record's details
commit to the release by a digest (`disclosures.digest`, computed by the standalone verifier's
own rule), so the chain covers the ledger: a disclosure added, removed or changed no longer
matches its record (audit.chain.verify_chain, the export and the standalone verifier check it).
A release is a dict: integration (id), tenant_id, partner, vertical, purpose_code, channel,
fields ({field: masking rule}), contract_version, person_ids."""
import json

from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from .models import Disclosure
from .verifier.scp_audit_verify import disclosure_document, disclosures_digest

_COLUMNS = ["disclosed_at", "tenant_id", "integration_id", "partner", "vertical", "purpose_code", "channel", "fields",
            "contract_version", "person_ids"]
# Typed, for the VALUES list of PostgreSQL's single statement (untyped literals there are text).
_TYPED_ROW = "(%s::timestamptz, %s::bigint, %s::uuid, %s, %s, %s, %s, %s::jsonb, %s, %s::jsonb)"
_ROW = "(" + ", ".join(["%s"] * (len(_COLUMNS) + 1)) + ")"
_INTEGRATION = Disclosure._meta.get_field("integration")
_TABLE = Disclosure._meta.db_table


def commitment(releases):
    """What the audit record's details carry about its releases."""
    return {"persons": sum(len(r["person_ids"]) for r in releases), "digest": disclosures_digest(releases)}


def _values(connection, occurred_at, release):
    return [connection.ops.adapt_datetimefield_value(occurred_at), release["tenant_id"],
            _INTEGRATION.get_db_prep_save(release["integration"], connection), release["partner"], release["vertical"],
            release["purpose_code"], release["channel"], json.dumps(release["fields"], sort_keys=True),
            release["contract_version"], json.dumps([str(p) for p in release["person_ids"]])]


def insert_with_record(cursor, connection, record_insert, record_params, occurred_at, releases):
    """Insert an audit record (`record_insert` with `record_params`) and its releases. On
    PostgreSQL one statement: one round trip and, outside a transaction, one commit (two
    commits doubled the ledger's cost); elsewhere two statements in one transaction."""
    if connection.vendor == "postgresql":
        params = list(record_params)
        for release in releases:
            params += _values(connection, occurred_at, release)
        cursor.execute(f"WITH record AS ({record_insert} RETURNING id) INSERT INTO {_TABLE} (record_id, {', '.join(_COLUMNS)}) "
                       f"SELECT record.id, v.* FROM record, (VALUES {', '.join([_TYPED_ROW] * len(releases))}) AS v",
                       params)
        return
    with transaction.atomic(using=connection.alias):
        cursor.execute(record_insert + " RETURNING id", record_params)
        record_id = cursor.fetchone()[0]
        params = []
        for release in releases:
            params += [record_id, *_values(connection, occurred_at, release)]
        cursor.execute(f"INSERT INTO {_TABLE} (record_id, {', '.join(_COLUMNS)}) VALUES " + ", ".join([_ROW] * len(releases)),
                       params)


def documents_of(disclosures):
    """The canonical documents of stored disclosures (as the export carries them)."""
    return [disclosure_document(as_release(d)) for d in disclosures]


def as_release(disclosure):
    return {"integration": disclosure.integration_id, "tenant_id": disclosure.tenant_id, "partner": disclosure.partner,
            "vertical": disclosure.vertical, "purpose_code": disclosure.purpose_code, "channel": disclosure.channel,
            "fields": disclosure.fields, "contract_version": disclosure.contract_version,
            "person_ids": disclosure.person_ids}


def among(ids):
    """The right side of an `__in` filter on thousands of ids: on PostgreSQL one array parameter
    (binding a placeholder per id took a third of the chain's verification time at volume)."""
    ids = list(ids)
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [ids])
    return ids


def grouped(record_ids):
    """{record_id: [Disclosure]} of the given audit records."""
    found = {}
    for disclosure in Disclosure.objects.filter(record_id__in=among(record_ids)).order_by("id"):
        found.setdefault(disclosure.record_id, []).append(disclosure)
    return found


def naming(person_id, tenant_id):
    """The ledger rows that name the person (an index lookup on PostgreSQL)."""
    rows = Disclosure.objects.filter(tenant_id=tenant_id)
    if connection.vendor == "postgresql":
        return rows.filter(person_ids__contains=[str(person_id)])
    return rows.filter(person_ids__icontains=f'"{person_id}"')  # the embedded SQLite default: JSON text


def recipients(person_id, tenant_id, vertical):
    """The integrations that ever received the person's data in `vertical`."""
    return set(naming(person_id, tenant_id).filter(vertical=vertical).values_list("integration_id", flat=True).distinct())
