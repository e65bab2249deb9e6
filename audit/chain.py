"""The tamper-evident chain: sealing records in commit order, signing checkpoints, and
verifying a live chain. Hashing rules live in the standalone verifier and are imported from it.

Design (see README "Audit"): the request path only INSERTs audit records, with no lock. A
sealer (Celery beat, every few seconds, and before every export or verification) takes a
per-chain advisory lock, appends every not-yet-sealed record of the chain in id order to the
chain, and signs a checkpoint over the new head. A record is covered from its sealing on.
"""
import datetime
import zlib

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from scp_core.models import Tenant

from . import ledger
from .models import AuditCheckpoint, AuditRecord, AuditSeal
from .signing import published_keys, sign, signing_key
from .verifier.scp_audit_verify import GENESIS, checkpoint_message, disclosure_mismatch, link_hash, signature_valid

PLATFORM_CHAIN = "_platform"


def chain_of(record):
    return record.tenant.code if record.tenant_id else PLATFORM_CHAIN


def record_document(record):
    """The canonical content of a record that is hashed (and exported)."""
    return _document([getattr(record, field) for field in _DOCUMENT_FIELDS], record.tenant.code if record.tenant_id else None)


# The record's columns its document is made of, in _document's order (read as plain values when
# verifying a chain: building a model instance per record took most of a long chain's time).
_DOCUMENT_FIELDS = ("id", "occurred_at", "event_type", "request_id", "integration_id", "actor", "client_id",
                    "source_ip", "verticals", "result", "status_code", "error_code", "details")


def _document(values, tenant_code):
    (id_, occurred_at, event_type, request_id, integration_id, actor, client_id, source_ip, verticals, result,
     status_code, error_code, details) = values
    return {
        "id": id_,
        "occurred_at": occurred_at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event_type": event_type,
        "request_id": request_id,
        "tenant": tenant_code,
        "integration": str(integration_id) if integration_id else None,
        "actor": actor,
        "client_id": client_id,
        "source_ip": source_ip,
        "verticals": verticals,
        "result": result,
        "status_code": status_code,
        "error_code": error_code,
        "details": details,
    }


def _records_of(chain):
    qs = AuditRecord.objects.select_related("tenant")
    return qs.filter(tenant__isnull=True) if chain == PLATFORM_CHAIN else qs.filter(tenant__code=chain)


def lock_chain(chain, *, using="default"):
    """The per-chain advisory lock (for the transaction): one sealer, purge or key rotation at a time."""
    if connections[using].vendor == "postgresql":
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x5C9A, zlib.crc32(chain.encode()) & 0x7FFFFFFF])


def chain_head(chain):
    """(seq, hash) of the chain's newest seal, or of its anchor, or of the genesis."""
    last = AuditSeal.objects.filter(chain=chain).order_by("-seq").first()
    if last is not None:
        return last.seq, last.hash
    anchor = AuditCheckpoint.objects.filter(chain=chain, is_anchor=True).order_by("-seq").first()
    return (anchor.seq, anchor.hash) if anchor else (0, GENESIS)


def checkpoint(chain, seq, hash_, *, is_anchor=False, using="default"):
    key = signing_key()  # first: a key used for the first time is registered from now on
    signed_at = timezone.now().isoformat()
    return AuditCheckpoint.objects.using(using).create(
        chain=chain, seq=seq, hash=hash_, signed_at=signed_at, key_id=key.key_id,
        signature=sign(checkpoint_message(chain, seq, hash_, signed_at)), is_anchor=is_anchor,
    )


def seal_chain(chain):
    """Append every unsealed record of the chain to it; returns how many were sealed."""
    sealed = 0
    while True:
        with transaction.atomic():
            lock_chain(chain)
            seq, prev = chain_head(chain)
            pending = list(_records_of(chain).filter(seal__isnull=True).order_by("id")[: settings.SCP_AUDIT_SEAL_BATCH])
            if not pending:
                return sealed
            seals = []
            for record in pending:
                seq += 1
                digest = link_hash(prev, record_document(record))
                seals.append(AuditSeal(chain=chain, seq=seq, record_id=record.id, prev_hash=prev, hash=digest))
                prev = digest
            AuditSeal.objects.bulk_create(seals)
            checkpoint(chain, seq, prev)
            sealed += len(seals)


def chains_with_pending():
    codes = AuditRecord.objects.filter(seal__isnull=True).values_list("tenant__code", flat=True).distinct()
    return sorted({code or PLATFORM_CHAIN for code in codes})


def seal_all():
    return {chain: seal_chain(chain) for chain in chains_with_pending()}


class ChainBroken(Exception):
    def __init__(self, record_id, seq, reason):
        self.record_id, self.seq, self.reason = record_id, seq, reason
        super().__init__(f"record {record_id} (seq {seq}): {reason}")


def _signed_by_its_key(chain, point, keys):
    """A valid signature by the key the checkpoint names, made within that key's period."""
    key = keys.get(point.key_id)
    if key is None or not key.in_use_at(datetime.datetime.fromisoformat(point.signed_at)):
        return False
    return signature_valid(key.public_key, checkpoint_message(chain, point.seq, point.hash, point.signed_at), point.signature)


def verify_chain(chain, *, chunk=10_000):
    """Verify the live chain from its anchor; returns the number of records checked or raises
    ChainBroken naming the first bad record."""
    keys = published_keys()
    anchor = AuditCheckpoint.objects.filter(chain=chain, is_anchor=True).order_by("-seq").first()
    seq, prev = (anchor.seq, anchor.hash) if anchor else (0, GENESIS)
    if anchor and not _signed_by_its_key(chain, anchor, keys):
        raise ChainBroken(None, anchor.seq, "the retention anchor's signature is invalid")
    checkpoints = {
        c.seq: c for c in AuditCheckpoint.objects.filter(chain=chain, seq__gt=seq, is_anchor=False)
    }
    tenant_codes = dict(Tenant.objects.values_list("id", "code"))
    checked, last_record_id, last_sealed_at = 0, 0, None
    while True:
        # Keyset, not OFFSET: each chunk starts where the last one ended (an offset would reread
        # the chain up to it, quadratic in its length).
        batch = list(AuditSeal.objects.filter(chain=chain, seq__gt=seq).order_by("seq")
                     .values_list("seq", "record_id", "prev_hash", "hash", "sealed_at")[:chunk])
        if not batch:
            break
        records = {row[1]: row for row in AuditRecord.objects.filter(id__in=ledger.among(s[1] for s in batch))
                   .values_list("tenant_id", *_DOCUMENT_FIELDS)}
        disclosures = ledger.grouped(list(records))
        for seal_seq, record_id, prev_hash, hash_, sealed_at in batch:
            if seal_seq != seq + 1:
                raise ChainBroken(record_id, seal_seq, f"sequence jumps from {seq} (seals removed)")
            if prev_hash != prev:
                raise ChainBroken(record_id, seal_seq, "does not link to the record before it")
            row = records.get(record_id)
            if row is None:
                raise ChainBroken(record_id, seal_seq, "the record was deleted")
            tenant_id = row[0]
            if tenant_id and tenant_id not in tenant_codes:  # a tenant made since the chain was opened
                tenant_codes = dict(Tenant.objects.values_list("id", "code"))
            document = _document(row[1:], tenant_codes.get(tenant_id) if tenant_id else None)
            if link_hash(prev, document) != hash_:
                raise ChainBroken(record_id, seal_seq, "content does not match its hash (altered)")
            mine = disclosures.get(record_id, [])
            mismatch = disclosure_mismatch(document, ledger.documents_of(mine))
            if mismatch:
                raise ChainBroken(record_id, seal_seq, mismatch)
            # What the digest leaves to the record itself: a disclosure's tenant and time are its record's.
            occurred_at = row[2]
            if any(d.tenant_id != tenant_id or d.disclosed_at != occurred_at for d in mine):
                raise ChainBroken(record_id, seal_seq, "a disclosure's tenant or time differs from its record's (changed)")
            point = checkpoints.get(seal_seq)
            if point is not None:
                if point.hash != hash_ or not _signed_by_its_key(chain, point, keys):
                    raise ChainBroken(record_id, seal_seq, "differs from the signed checkpoint")
            seq, prev = seal_seq, hash_
            last_record_id, last_sealed_at = max(last_record_id, record_id), sealed_at
            checked += 1
    if last_sealed_at is not None:
        grace = datetime.timedelta(seconds=settings.SCP_AUDIT_SEAL_GRACE_SECONDS)
        stray = (
            _records_of(chain).filter(seal__isnull=True, id__lt=last_record_id, occurred_at__lt=last_sealed_at - grace)
            .order_by("id").first()
        )
        if stray is not None:
            raise ChainBroken(stray.id, None, "is not in the sealed chain though older than it (inserted)")
    return checked
