"""Retention per tenant policy (and the platform's own, SCP_PLATFORM_AUDIT_RETENTION_DAYS):
whole sealed segments older than the retention are removed, leaving a signed anchor from
which the chain still verifies; the purge is audited.

A purge runs in three steps, each its own transaction on the purge role's connection:
1. anchor: per chain, the newest checkpoint whose segment lies wholly before the cutoff becomes
   the chain's signed anchor (from then on verification and exports start after it);
2. drop: every month of audit records (audit.partitions) in which every record lies at or below
   its chain's anchor is dropped whole, with its disclosures, one month per short transaction
   (a detach locks the audit table for the moment it takes);
3. delete: what is left at or below each anchor (records of months shared with younger or
   unpurged chains, the DEFAULT partition, the embedded SQLite default) is deleted row by row,
   with the seals and checkpoints the anchor replaces.
Between the steps the chains verify: records at or below an anchor are no longer part of them."""
import datetime
import json

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from . import partitions
from .chain import PLATFORM_CHAIN, checkpoint, lock_chain, seal_chain
from .models import AuditCheckpoint, AuditRecord, AuditSeal, Disclosure
from .services import AuditEvent, audit_record


def purge_tenant(tenant, *, now=None):
    """Purge the tenant's segments older than its retention; returns the records removed."""
    return purge([(tenant.code, tenant, tenant.audit_retention_days)], now=now)[tenant.code]


def purge_platform(*, now=None):
    """Purge the platform chain's segments older than SCP_PLATFORM_AUDIT_RETENTION_DAYS."""
    return purge([(PLATFORM_CHAIN, None, settings.SCP_PLATFORM_AUDIT_RETENTION_DAYS)], now=now)[PLATFORM_CHAIN]


def purge(plan, *, now=None):
    """Purge each (chain, tenant or None, retention days) of `plan` together, so that a month the
    chains share is dropped whole once all of them are anchored past it; returns {chain: records removed}."""
    now = now or timezone.now()
    db = purge_database()
    plan = [(chain, tenant, days) for chain, tenant, days in plan if days]
    anchors = {chain: _anchor(chain, now - datetime.timedelta(days=days), db) for chain, _tenant, days in plan}
    dropped = {}
    if plan:
        for chain, count in _drop_months(now - datetime.timedelta(days=min(days for _c, _t, days in plan)), db).items():
            dropped[chain] = dropped.get(chain, 0) + count
    removed = dict.fromkeys(anchors, 0)
    for chain, tenant, days in plan:
        if anchors[chain] is not None:
            removed[chain] = _delete_below(chain, tenant, days, anchors[chain], dropped.get(chain, 0), db)
    return removed


def purge_database():
    """The purge role's connection (alias `purge`, from DATABASE_PURGE_URL) where configured."""
    return "purge" if "purge" in settings.DATABASES else "default"


def _maintenance(db, value):
    if connections[db].vendor == "postgresql":
        with connections[db].cursor() as cursor:
            cursor.execute(f"SET LOCAL scp.audit_maintenance = '{value}'")


def _anchor(chain, cutoff, db):
    """Step 1: the chain's new signed anchor (a checkpoint), or None when no whole segment is older than the cutoff."""
    seal_chain(chain)
    with transaction.atomic(using=db):
        lock_chain(chain, using=db)
        # A segment ends at a checkpoint; purge up to the newest checkpoint whose records
        # are all older than the cutoff, so only whole segments go.
        newest_young = AuditSeal.objects.using(db).filter(chain=chain, record__occurred_at__gte=cutoff).order_by("seq").first()
        limit = newest_young.seq - 1 if newest_young else None
        points = AuditCheckpoint.objects.using(db).filter(chain=chain, is_anchor=False)
        if limit is not None:
            points = points.filter(seq__lte=limit)
        end = points.order_by("-seq").first()
        if end is None or not AuditSeal.objects.using(db).filter(chain=chain, seq__lte=end.seq).exists():
            return None
        return checkpoint(chain, end.seq, end.hash, is_anchor=True, using=db)


def _drop_months(cutoff, db):
    """Step 2: drop each month wholly before `cutoff` whose records all lie at or below their
    chains' anchors; returns {chain: records dropped}. Each drop is audited in its transaction."""
    dropped = {}
    # Never the month being appended to, whatever clock the caller passes: once dropped, its
    # appends would go to the DEFAULT partition and the month could not be made again.
    cutoff = min(cutoff, partitions.month_start(timezone.now()))
    for name, _lower, upper in partitions.monthly(using=db):
        if upper > cutoff:
            break
        with transaction.atomic(using=db):
            _maintenance(db, "on")
            counts = partitions.drop(name, using=db)
            if counts is None:
                continue  # some record in it is not purgeable yet: its chain's rows go one by one
            counts = json.loads(counts) if isinstance(counts, str) else counts
            _maintenance(db, "off")
            audit_record(using=db, event_type=AuditEvent.AUDIT_PURGED, actor="system",
                         details={"partition": name, "records": counts})
        for chain, count in counts.items():
            dropped[chain] = dropped.get(chain, 0) + count
    return dropped


def _delete_below(chain, tenant, retention_days, anchor, dropped, db):
    """Step 3: delete the chain's records, seals and checkpoints the anchor replaces; returns
    the records removed, with those dropped in whole months, and audits the purge."""
    with transaction.atomic(using=db):
        lock_chain(chain, using=db)
        # Only the purge role may delete audit rows at all (audit/privileges.py), and the
        # append-only triggers let them go only inside this flagged transaction.
        _maintenance(db, "on")
        doomed = AuditSeal.objects.using(db).filter(chain=chain, seq__lte=anchor.seq).values("record_id")
        # The ledger's retention is the log's.
        Disclosure.objects.using(db).filter(record_id__in=doomed)._raw_delete(db)
        deleted = AuditRecord.objects.using(db).filter(id__in=doomed)._raw_delete(db)
        AuditSeal.objects.using(db).filter(chain=chain, seq__lte=anchor.seq)._raw_delete(db)
        AuditCheckpoint.objects.using(db).filter(chain=chain, seq__lt=anchor.seq)._raw_delete(db)
        AuditCheckpoint.objects.using(db).filter(chain=chain, seq=anchor.seq, is_anchor=False)._raw_delete(db)
        _maintenance(db, "off")
        removed = deleted + dropped
        if removed:
            audit_record(using=db,
                event_type=AuditEvent.AUDIT_PURGED, tenant=tenant, actor="system",
                details={"records": removed, "through_seq": anchor.seq, "anchor_hash": anchor.hash,
                         "retention_days": retention_days},
            )
    return removed
