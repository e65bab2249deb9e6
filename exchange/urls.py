from django.urls import path

from . import views

urlpatterns = [
    path("persons/", views.PersonListView.as_view(), name="exchange-persons"),
    path("persons/<uuid:person_id>/", views.PersonDetailView.as_view(), name="exchange-person"),
    path("records/", views.RecordListView.as_view(), name="exchange-records"),
    path("aggregates/", views.AggregateView.as_view(), name="exchange-aggregates"),
    path("integrations/<uuid:integration_id>/", views.IntegrationDescriptionView.as_view(), name="exchange-integration"),
    path("subscriptions/", views.SubscriptionView.as_view(), name="exchange-subscriptions"),
    path(
        "subscriptions/<uuid:subscription_id>/rotate-secret/",
        views.SubscriptionRotateSecretView.as_view(),
        name="exchange-subscription-rotate",
    ),
    path("events/", views.EventFeedView.as_view(), name="exchange-events"),
    path("exports/", views.ExportCreateView.as_view(), name="exchange-exports"),
    path("exports/<uuid:job_id>/", views.ExportDetailView.as_view(), name="exchange-export"),
    path("exports/<uuid:job_id>/download/", views.ExportDownloadView.as_view(), name="exchange-export-download"),
    path("imports/", views.ImportCreateView.as_view(), name="exchange-imports"),
    path("imports/<uuid:job_id>/", views.ImportDetailView.as_view(), name="exchange-import"),
    path("imports/<uuid:job_id>/resume/", views.ImportResumeView.as_view(), name="exchange-import-resume"),
    path("imports/<uuid:job_id>/errors/", views.ImportErrorsView.as_view(), name="exchange-import-errors"),
]
