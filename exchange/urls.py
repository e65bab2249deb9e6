from django.urls import path

from . import views

urlpatterns = [
    path("persons/", views.PersonListView.as_view(), name="exchange-persons"),
    path("persons/<uuid:person_id>/", views.PersonDetailView.as_view(), name="exchange-person"),
    path("records/", views.RecordListView.as_view(), name="exchange-records"),
    path("aggregates/", views.AggregateView.as_view(), name="exchange-aggregates"),
]
