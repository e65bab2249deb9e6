from django.urls import path

from . import views

urlpatterns = [
    path("integrations/", views.IntegrationListView.as_view(), name="governance-integrations"),
    path("integrations/<uuid:integration_id>/", views.IntegrationDetailView.as_view(), name="governance-integration"),
    path(
        "integrations/<uuid:integration_id>/<slug:action>/",
        views.IntegrationActionView.as_view(),
        name="governance-integration-action",
    ),
    path("consents/", views.ConsentChangeView.as_view(), name="governance-consents"),
    path("persons/<uuid:person_id>/disclosures/", views.PersonDisclosuresView.as_view(), name="governance-person-disclosures"),
]
