"""Exports for regulators: a tenant's sealed chain (or a period of it) as `records.jsonl` plus
a `manifest.json` with counts, first and last hash, the signed checkpoints that anchor and
cover it, and a closing signature; verifiable offline by `verifier/scp_audit_verify.py`."""
import hashlib
import json
from pathlib import Path

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from . import ledger
from .chain import PLATFORM_CHAIN, checkpoint_message, record_document, seal_chain
from .models import AuditCheckpoint, AuditRecord, AuditSeal, AuditSigningKey
from .services import AuditEvent, audit_record
from .signing import key_id, public_key_b64, register_current_key, sign
from .verifier.scp_audit_verify import FORMAT, canonical_bytes


def export_chain(*, tenant, out_dir, since=None, until=None, actor="", progress=None, chunk=2000):
    """Write the export of `tenant`'s chain, or of the platform's (`tenant=None`: requests
    that named no tenant, failed logins); returns the manifest. The export is audited after it."""
    chain = tenant.code if tenant is not None else PLATFORM_CHAIN
    seal_chain(chain)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A period is exported as the contiguous stretch of the chain from the first record in it
    # to the last, so that it verifies on its own (late-sealed neighbours come along).
    # Seals at or below the retention anchor are no longer part of the chain (a purge deletes
    # them in its last step, audit.retention): the export starts after the anchor.
    anchor = AuditCheckpoint.objects.filter(chain=chain, is_anchor=True).order_by("-seq").first()
    seals = AuditSeal.objects.filter(chain=chain, seq__gt=anchor.seq if anchor else 0)
    bounds = seals
    if since is not None:
        bounds = bounds.filter(record__occurred_at__gte=since)
    if until is not None:
        bounds = bounds.filter(record__occurred_at__lt=until)
    lo_hi = bounds.aggregate(lo=Min("seq"), hi=Max("seq"))
    seals = seals.filter(seq__gte=lo_hi["lo"] or 0, seq__lte=lo_hi["hi"] or -1).order_by("seq")
    total = seals.count()
    first_seq = last_seq = None
    first_hash = last_hash = None
    digest = hashlib.sha256()
    written = 0
    with (out / "records.jsonl").open("wb") as handle:
        last_seen = (lo_hi["lo"] or 1) - 1
        while True:
            batch = list(seals.filter(seq__gt=last_seen)[:chunk])
            if not batch:
                break
            # Records fetched apart from their seals: a seal whose record is gone still
            # appears (with no record) and the verifier names it, instead of vanishing.
            records = {r.id: r for r in
                       AuditRecord.objects.select_related("tenant").filter(id__in=ledger.among(x.record_id for x in batch))}
            disclosures = ledger.grouped(list(records))
            for seal in batch:
                record = records.get(seal.record_id)
                entry = {"seq": seal.seq, "record_id": seal.record_id, "prev_hash": seal.prev_hash,
                         "hash": seal.hash, "record": record_document(record) if record else None}
                if seal.record_id in disclosures:  # the ledger rows the record commits to
                    entry["disclosures"] = ledger.documents_of(disclosures[seal.record_id])
                line = canonical_bytes(entry) + b"\n"
                handle.write(line)
                digest.update(line)
                first_seq = first_seq or seal.seq
                first_hash = first_hash or seal.hash
                last_seq, last_hash = seal.seq, seal.hash
                written += 1
            last_seen = batch[-1].seq
            if progress:
                progress(written, total)
    lo = (first_seq or 1) - 1
    checkpoints = list(AuditCheckpoint.objects.filter(chain=chain, seq__gte=lo, seq__lte=last_seq or 0).order_by("seq"))
    register_current_key()
    signers = {c.key_id for c in checkpoints} | {key_id()}
    keys = {k.key_id: k for k in AuditSigningKey.objects.filter(key_id__in=signers)}  # the register's facts
    closing_at = timezone.now().isoformat()
    manifest = {
        "format": FORMAT,
        "chain": chain,
        "tenant": tenant.code if tenant is not None else None,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "exported_at": closing_at,
        "count": written,
        "first_seq": first_seq or 1,
        "last_seq": last_seq or 0,
        "first_hash": first_hash,
        "last_hash": last_hash,
        "records_sha256": digest.hexdigest(),
        "public_key": public_key_b64(),
        "key_id": key_id(),
        # Every key that signed a checkpoint here (and the closing signature), with its period:
        # regulators check them against the keys the operator published.
        "keys": [
            {"key_id": k.key_id, "public_key": k.public_key, "from": k.first_used_at.isoformat(),
             "until": k.retired_at.isoformat() if k.retired_at else None}
            for k in keys.values()
        ],
        "checkpoints": [
            {"seq": c.seq, "hash": c.hash, "signed_at": c.signed_at, "signature": c.signature, "anchor": c.is_anchor,
             "key_id": c.key_id}
            for c in checkpoints
        ],
        "closing_signature": {
            "signed_at": closing_at,
            "signature": sign(checkpoint_message(chain, last_seq or 0, last_hash, closing_at)),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with transaction.atomic():
        audit_record(
            event_type=AuditEvent.AUDIT_EXPORTED, tenant=tenant, actor=actor or "system",
            details={"records": written, "first_seq": manifest["first_seq"], "last_seq": manifest["last_seq"],
                     "since": manifest["since"], "until": manifest["until"]},
        )
    return manifest
