"""Retention per tenant policy (and the platform's own, SCP_PLATFORM_AUDIT_RETENTION_DAYS):
whole sealed segments older than the retention are removed, leaving a signed anchor from
which the chain still verifies; the purge is audited."""
import datetime

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .chain import PLATFORM_CHAIN, checkpoint, lock_chain, seal_chain
from .models import AuditCheckpoint, AuditRecord, AuditSeal, Disclosure
from .services import AuditEvent, audit_record


def purge_tenant(tenant, *, now=None):
    """Purge the tenant's segments older than its retention; returns the records removed."""
    return _purge(tenant.code, tenant, tenant.audit_retention_days, now=now)


def purge_platform(*, now=None):
    """Purge the platform chain's segments older than SCP_PLATFORM_AUDIT_RETENTION_DAYS."""
    return _purge(PLATFORM_CHAIN, None, settings.SCP_PLATFORM_AUDIT_RETENTION_DAYS, now=now)


def purge_database():
    """The purge role's connection (alias `purge`, from DATABASE_PURGE_URL) where configured."""
    return "purge" if "purge" in settings.DATABASES else "default"


def _maintenance(db, value):
    if connections[db].vendor == "postgresql":
        with connections[db].cursor() as cursor:
            cursor.execute(f"SET LOCAL scp.audit_maintenance = '{value}'")


def _purge(chain, tenant, retention_days, *, now=None):
    if not retention_days:
        return 0
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=retention_days)
    seal_chain(chain)
    db = purge_database()
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
        if end is None:
            return 0
        doomed = AuditSeal.objects.using(db).filter(chain=chain, seq__lte=end.seq)
        record_ids = list(doomed.values_list("record_id", flat=True))
        if not record_ids:
            return 0
        checkpoint(chain, end.seq, end.hash, is_anchor=True, using=db)
        # Only the purge role may delete audit rows at all (audit/privileges.py), and the
        # append-only triggers let them go only inside this flagged transaction.
        _maintenance(db, "on")
        AuditCheckpoint.objects.using(db).filter(chain=chain, seq__lt=end.seq).delete()
        AuditCheckpoint.objects.using(db).filter(chain=chain, seq=end.seq, is_anchor=False).delete()
        doomed.delete()
        Disclosure.objects.using(db).filter(record_id__in=record_ids).delete()  # the ledger's retention is the log's
        AuditRecord.objects.using(db).filter(id__in=record_ids).delete()
        _maintenance(db, "off")
        audit_record(using=db,
            event_type=AuditEvent.AUDIT_PURGED, tenant=tenant, actor="system",
            details={"records": len(record_ids), "through_seq": end.seq, "anchor_hash": end.hash,
                     "retention_days": retention_days},
        )
    return len(record_ids)
