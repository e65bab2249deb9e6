"""Portal screens of ongoing monitoring: charts per tenant or integration, and compliance."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from lifecycle.roles import roles_of
from registry.models import Integration
from scp_core.models import Tenant

from . import monitoring

WIDTH, HEIGHT = 720, 160


def _scope(request):
    """Tenant ids the person may monitor (None: all), or 403."""
    roles = roles_of(request.user)
    if roles.sees_everything:
        return None
    if roles.admin_tenants:
        return set(roles.admin_tenants)
    raise PermissionDenied


def _chart(points, keys):
    """Bars for each key (stacked side by side per hour), scaled to the chart; SVG-ready."""
    top = max([p[k] or 0 for p in points for k in keys] + [1])
    slot = WIDTH / max(len(points), 1)
    bar = slot / (len(keys) + 1)
    bars = []
    for i, point in enumerate(points):
        for j, key in enumerate(keys):
            value = point[key] or 0
            h = HEIGHT * value / top
            bars.append({"x": round(i * slot + j * bar, 1), "y": round(HEIGHT - h, 1), "w": round(bar, 1),
                         "h": round(h, 1), "key": key, "title": f"{point['hour']:%d %b %H:00} {key}: {value}"})
    return {"bars": bars, "top": round(top, 2), "width": WIDTH, "height": HEIGHT}


def monitoring_view(request):
    tenant_ids = _scope(request)
    tenants = Tenant.objects.all() if tenant_ids is None else Tenant.objects.filter(pk__in=tenant_ids)
    chosen = request.GET.get("tenant")
    if chosen:
        tenant = get_object_or_404(tenants, code=chosen)
        tenant_ids = {tenant.pk}
    integration = None
    if request.GET.get("integration"):
        visible = Integration.objects.visible_to(roles_of(request.user))
        integration = get_object_or_404(visible, pk=request.GET["integration"])
    raw_hours = request.GET.get("hours") or "24"
    hours = min(max(int(raw_hours), 1), 24 * 14) if raw_hours.isdigit() else 24
    data = monitoring.series(tenant_ids=tenant_ids, integration=integration, hours=hours)
    return TemplateResponse(request, "admin/monitoring/overview.html", {
        **admin.site.each_context(request),
        "title": "Monitoring",
        "tenants": tenants, "chosen": chosen, "integration": integration, "hours": hours,
        "requests_chart": _chart(data["points"], ["requests", "denied"]),
        "latency_chart": _chart(data["points"], ["p50", "p95"]),
        "denials": data["denials"], "incidents": data["incidents"],
        "total": sum(p["requests"] for p in data["points"]),
        "denied": sum(p["denied"] for p in data["points"]),
    })


def compliance_view(request):
    tenant_ids = _scope(request)
    return TemplateResponse(request, "admin/monitoring/compliance.html", {
        **admin.site.each_context(request),
        "title": "Compliance: what needs attention",
        "items": monitoring.compliance(tenant_ids=tenant_ids),
    })
