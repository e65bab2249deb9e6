"""The exchange API: every view derives from views.base.GovernedAPIView."""
from .batch import (
    ExportCreateView,
    ExportDetailView,
    ExportDownloadView,
    ImportCreateView,
    ImportDetailView,
    ImportErrorsView,
    ImportResumeView,
)
from .events import EventFeedView, SubscriptionRotateSecretView, SubscriptionView
from .integrations import IntegrationDescriptionView
from .realtime import AggregateView, PersonDetailView, PersonListView, RecordListView

__all__ = [
    "AggregateView", "EventFeedView", "ExportCreateView", "ExportDetailView", "ExportDownloadView", "ImportCreateView",
    "ImportDetailView", "ImportErrorsView", "ImportResumeView", "IntegrationDescriptionView", "PersonDetailView", "PersonListView", "RecordListView",
    "SubscriptionRotateSecretView", "SubscriptionView",
]
