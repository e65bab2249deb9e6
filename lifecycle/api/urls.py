from django.urls import path

from . import agreements, credentials, recertifications, views

urlpatterns = [
    path("integrations/", views.IntegrationListView.as_view(), name="governance-integrations"),
    path("integrations/<uuid:integration_id>/", views.IntegrationDetailView.as_view(), name="governance-integration"),
    # Before the actions' pattern, which would take "agreements" for an action's name.
    path("integrations/<uuid:integration_id>/agreements/", agreements.IntegrationAgreementsView.as_view(),
         name="governance-integration-agreements"),
    path("integrations/<uuid:integration_id>/agreements/<int:agreement_id>/document/",
         agreements.AgreementDocumentView.as_view(), name="governance-integration-agreement-document"),
    path("integrations/<uuid:integration_id>/credentials/", credentials.IntegrationCredentialsView.as_view(),
         name="governance-integration-credentials"),
    path(
        "integrations/<uuid:integration_id>/<slug:action>/",
        views.IntegrationActionView.as_view(),
        name="governance-integration-action",
    ),
    path("consents/", views.ConsentChangeView.as_view(), name="governance-consents"),
    path("recertifications/", recertifications.RecertificationListView.as_view(), name="governance-recertifications"),
    path("recertifications/<int:recertification_id>/answer/", recertifications.RecertificationAnswerView.as_view(),
         name="governance-recertification-answer"),
    path("persons/<uuid:person_id>/disclosures/", views.PersonDisclosuresView.as_view(), name="governance-person-disclosures"),
]
