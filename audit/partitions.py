"""The audit records' monthly partitions (PostgreSQL, audit migration 0017).

A month's partition is created ahead of time (the Celery beat task `ensure_audit_partitions_task`
and `manage.py audit_partitions`, SCP_AUDIT_PARTITION_MONTHS_AHEAD months on); an append to a
month not created yet lands in the DEFAULT partition and never fails. Retention drops a month
whole once every record in it lies at or below its chain's signed anchor (audit.retention);
creating and dropping run as the table's owner, through the two functions of the migration,
which the application and the purge role may call (audit/privileges.py) without owning a table.
"""
import datetime
import re

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .models import AuditRecord

TABLE = AuditRecord._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
_MONTHLY = re.compile(rf"^{TABLE}_y(\d{{4}})m(\d{{2}})$")


def is_partitioned(using="default"):
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return bool(row and row[0])


def month_start(moment):
    moment = moment.astimezone(datetime.UTC)
    return datetime.datetime(moment.year, moment.month, 1, tzinfo=datetime.UTC)


def next_month(moment):
    start = month_start(moment)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def horizon(months_ahead=None):
    """The first instant of the month `months_ahead` (default SCP_AUDIT_PARTITION_MONTHS_AHEAD) after this one."""
    last = month_start(timezone.now())
    for _ in range(settings.SCP_AUDIT_PARTITION_MONTHS_AHEAD if months_ahead is None else months_ahead):
        last = next_month(last)
    return last


def ensure(*, first=None, last=None, using="default"):
    """Create the monthly partitions from `first`'s month (default: this month) through `last`'s
    (default: SCP_AUDIT_PARTITION_MONTHS_AHEAD months on); returns the names created."""
    if not is_partitioned(using):
        return []
    first = first or timezone.now()
    last = last or horizon()
    # Its own transaction (a savepoint inside one): a range the function refuses (months from
    # 24 back to 24 ahead, audit migration 0018) leaves the caller's transaction usable.
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT scp_audit_ensure_partitions(%s, %s)", [first, last])
        return list(cursor.fetchone()[0])


def monthly(using="default"):
    """[(name, first instant, first instant of the next month)] of the monthly partitions, oldest first."""
    if not is_partitioned(using):
        return []
    with connections[using].cursor() as cursor:
        cursor.execute("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(%s)
        """, [TABLE])
        names = [name for (name,) in cursor.fetchall()]
    months = []
    for name in names:
        match = _MONTHLY.match(name)
        if match:
            lower = datetime.datetime(int(match[1]), int(match[2]), 1, tzinfo=datetime.UTC)
            months.append((name, lower, next_month(lower)))
    return sorted(months, key=lambda month: month[1])


def drop(name, *, using):
    """Drop a month in the purge's maintenance transaction on `using` (the purge role's
    connection); returns {chain: records dropped}, or None when some record in it is not at or
    below its chain's anchor yet (then nothing is done)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT scp_audit_drop_partition(%s)", [name])
        return cursor.fetchone()[0]
