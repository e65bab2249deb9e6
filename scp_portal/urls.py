"""Top-level URLs: the admin-centric portal, staff OIDC login and the versioned APIs."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated

from exchange.authentication import IntegrationTokenAuthentication

from . import partner_views as partner
from .admin.agreements import agreement_upload_view
from .metrics import metrics_view
from .monitoring_views import compliance_view, monitoring_view
from .waiting_api import WaitingView

admin.site.site_header = "SCP Integration Layer"
admin.site.site_title = "SCP Integration Layer portal"
admin.site.index_title = "Governance portal"

urlpatterns = [
    path("admin/monitoring/", admin.site.admin_view(monitoring_view), name="monitoring"),
    path("admin/compliance/", admin.site.admin_view(compliance_view), name="monitoring-compliance"),
    # The partner's own pages (scp_portal.partner_views).
    path("admin/partner/", admin.site.admin_view(partner.partner_home_view), name="partner-home"),
    path("admin/partner/integrations/<uuid:integration_id>/", admin.site.admin_view(partner.partner_integration_view),
         name="partner-integration"),
    path("admin/partner/integrations/<uuid:integration_id>/api-docs/",
         admin.site.admin_view(partner.partner_api_docs_view), name="partner-api-docs"),
    path("admin/partner/integrations/<uuid:integration_id>/openapi.json",
         admin.site.admin_view(partner.partner_openapi_view), name="partner-openapi"),
    path("admin/partner/integrations/<uuid:integration_id>/deliveries/<uuid:delivery_id>/replay/",
         admin.site.admin_view(partner.partner_delivery_replay_view), name="partner-delivery-replay"),
    # An integration's data-sharing agreement upload (scp_portal.admin.agreements).
    path("admin/registry/integration/<uuid:object_id>/agreement/", admin.site.admin_view(agreement_upload_view),
         name="integration-agreement-upload"),
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
    path("api/v1/governance/waiting/", WaitingView.as_view(), name="governance-waiting"),
    path("api/v1/governance/", include("lifecycle.api.urls")),
]
