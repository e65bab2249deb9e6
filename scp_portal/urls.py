"""Top-level URLs: the admin-centric portal, staff OIDC login and the versioned APIs."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated

from exchange.authentication import IntegrationTokenAuthentication

from .metrics import metrics_view
from .monitoring_views import compliance_view, monitoring_view

admin.site.site_header = "SCP Integration Layer"
admin.site.site_title = "SCP Integration Layer portal"
admin.site.index_title = "Governance portal"

urlpatterns = [
    path("admin/monitoring/", admin.site.admin_view(monitoring_view), name="monitoring"),
    path("admin/compliance/", admin.site.admin_view(compliance_view), name="monitoring-compliance"),
    path("admin/", admin.site.urls),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("exchange.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(
            authentication_classes=[SessionAuthentication, IntegrationTokenAuthentication],
            permission_classes=[IsAuthenticated],
        ),
        name="api-schema",
    ),
    path("api/v1/governance/", include("lifecycle.api.urls")),
]
