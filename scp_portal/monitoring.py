"""Ongoing monitoring (spec §6.2 step 5): request, denial and latency series from the audit
log, and the compliance list of what needs attention. Reads only; scoped by the caller."""
import datetime

from django.db.models import Count, Max, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord, Incident
from exchange.models import Connector, ConnectorStatus, ExportJob, ImportJob, ImportStatus
from lifecycle import credentials
from lifecycle.models import Notification, NotificationStatus, Recertification, RecertificationStatus
from registry.models import DataContractVersion, Integration


def _requests(tenant_ids, integration=None, since=None):
    qs = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST, occurred_at__gte=since)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    if integration is not None:
        qs = qs.filter(integration=integration)
    return qs


def series(*, tenant_ids, integration=None, hours=24, now=None):
    """Per hour: requests, denials, and p50/p95 latency; plus denials by code and incidents."""
    now = now or timezone.now()
    since = (now - datetime.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    qs = _requests(tenant_ids, integration, since)
    buckets = {since + datetime.timedelta(hours=i): {"requests": 0, "denied": 0, "latencies": []} for i in range(hours + 1)}
    for row in qs.annotate(hour=TruncHour("occurred_at")).values("hour").annotate(
        n=Count("id"), denied=Count("id", filter=Q(result="denied"))
    ):
        bucket = buckets.setdefault(row["hour"], {"requests": 0, "denied": 0, "latencies": []})
        bucket.update(requests=row["n"], denied=row["denied"])
    for hour, latency in qs.annotate(hour=TruncHour("occurred_at")).values_list("hour", "details__latency_ms")[:50000]:
        if latency is not None and hour in buckets:
            buckets[hour]["latencies"].append(float(latency))
    points = []
    for hour in sorted(buckets):
        values = sorted(buckets[hour]["latencies"])
        points.append({
            "hour": hour, "requests": buckets[hour]["requests"], "denied": buckets[hour]["denied"],
            "p50": values[len(values) // 2] if values else None,
            "p95": values[min(len(values) - 1, int(len(values) * 0.95))] if values else None,
        })
    denials = list(qs.filter(result="denied").values("error_code").annotate(n=Count("id")).order_by("-n"))
    incidents = Incident.objects.filter(opened_at__gte=since)
    if tenant_ids is not None:
        incidents = incidents.filter(tenant_id__in=tenant_ids)
    if integration is not None:
        incidents = incidents.filter(integration=integration)
    return {"points": points, "denials": denials, "incidents": list(incidents.select_related("integration")[:50])}


def compliance(*, tenant_ids, now=None, soon_days=14, unused_days=30, spike_factor=3):
    """What needs attention, each item with the reason it is listed."""
    now = now or timezone.now()
    integrations = Integration.objects.select_related("tenant", "template", "data_contract__contract")
    if tenant_ids is not None:
        integrations = integrations.filter(tenant_id__in=tenant_ids)
    serving = integrations.serving()
    items = []
    for i in serving.filter(active_until__isnull=False, active_until__lte=now + datetime.timedelta(days=soon_days)):
        past = i.active_until <= now
        items.append((i, "past active_until" if past else f"active_until within {soon_days} days", i.active_until))
    for i in serving.filter(agreement_until__isnull=False, agreement_until__lte=now + datetime.timedelta(days=soon_days)):
        items.append((i, f"data-sharing agreement ends within {soon_days} days: renew it", i.agreement_until))
    last_use = dict(
        AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST, integration__in=serving, result="success")
        .values_list("integration").annotate(last=Max("occurred_at"))
    )
    for i in serving:
        last = last_use.get(i.pk)
        if last is None:
            items.append((i, "credentials never used", None))
        elif last < now - datetime.timedelta(days=unused_days):
            items.append((i, f"credentials unused for over {unused_days} days", last))
    hour = now - datetime.timedelta(hours=1)
    day = now - datetime.timedelta(days=1)
    denied = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST, result="denied", integration__in=serving)
    recent = dict(denied.filter(occurred_at__gte=hour).values_list("integration").annotate(n=Count("id")))
    daily = dict(denied.filter(occurred_at__gte=day).values_list("integration").annotate(n=Count("id")))
    for i in serving:
        last_hour, per_hour = recent.get(i.pk, 0), daily.get(i.pk, 0) / 24
        if last_hour >= 10 and last_hour > spike_factor * max(per_hour, 1):
            items.append((i, f"spike of denials: {last_hour} in the last hour", None))
    connectors = Connector.objects.filter(integration__in=integrations).exclude(status=ConnectorStatus.HEALTHY)
    for c in connectors.select_related("integration__tenant"):
        items.append((c.integration, f"connector {c.name} {c.status}: {c.last_error}", c.last_success_at))
    for i in serving.filter(template__isnull=False):
        newer = i.newer_template
        if newer is not None:
            items.append((i, f"template superseded by {newer.slug} v{newer.version}", None))
    newest_contract = dict(DataContractVersion.objects.values_list("contract").annotate(v=Max("version")))
    for i in serving:
        newest = newest_contract.get(i.data_contract.contract_id, 0)
        if newest > i.data_contract.version:
            items.append((i, f"data contract {i.data_contract.ref} superseded by version {newest}", None))
    week = now - datetime.timedelta(days=7)
    for kind, model in (("import", ImportJob), ("export", ExportJob)):
        failed = model.objects.filter(integration__in=integrations, status=ImportStatus.FAILED, finished_at__gte=week)
        for job in failed.select_related("integration__tenant"):
            items.append((job.integration, f"{kind} {job.pk} failed: {job.error[:120]}", job.finished_at))
    overdue = Recertification.objects.filter(integration__in=integrations, status=RecertificationStatus.OPEN,
                                             due_at__lte=now).select_related("integration__tenant", "vertical")
    for r in overdue:
        stage = f", integration {r.lapse_stage}" if r.lapse_stage else ""
        items.append((r.integration, f"recertification of {r.vertical.code} overdue{stage}", r.due_at))
    unsent = Notification.objects.filter(integration__in=integrations, status=NotificationStatus.FAILED,
                                         created_at__gte=week).select_related("integration__tenant")
    for n in unsent:
        items.append((n.integration, f"e-mail ({n.get_event_display()}) to {n.recipient} not sent: {n.last_error[:120]}",
                      n.created_at))
    for c in credentials.aged(serving, now):
        items.append((c.integration, f"{c.get_kind_display()} past its maximum age of {credentials.max_age().days} days",
                      c.issued_at))
    return items
