"""The portal's URLs plus the bare baseline: the same persons with no governance at all."""
from django.urls import path

from scp_portal.urls import urlpatterns as portal_urlpatterns

from .bare import bare_persons
from .unrecorded import UnrecordedPersonListView

urlpatterns = [
    path("bench/bare/persons/", bare_persons),
    path("bench/unrecorded/persons/", UnrecordedPersonListView.as_view()),
    *portal_urlpatterns,
]
