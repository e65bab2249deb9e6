"""Shapes of the exchange API: input validation and the OpenAPI document; no writes here."""
from rest_framework import serializers


class MinimizedPersonSerializer(serializers.Serializer):
    """A person as the data contract lets this integration see them: only the contract's
    fields for the vertical, each masked by its rule (so the set of keys varies)."""

    id = serializers.UUIDField()

    class Meta:
        ref_name = "MinimizedPerson"


class RecordSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    person_id = serializers.UUIDField()
    vertical = serializers.CharField()
    record_type = serializers.CharField()
    data = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class _Page(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="cursor link to the next page")
    previous = serializers.URLField(allow_null=True)


class PersonPageSerializer(_Page):
    results = MinimizedPersonSerializer(many=True)


class RecordPageSerializer(_Page):
    results = RecordSerializer(many=True)


class RecordPushSerializer(serializers.Serializer):
    person_id = serializers.UUIDField()
    vertical = serializers.CharField(max_length=40)
    record_type = serializers.CharField(max_length=60)
    data = serializers.DictField()


class AggregateCellSerializer(serializers.Serializer):
    group = serializers.CharField(allow_null=True)
    count = serializers.IntegerField(allow_null=True, help_text="null when suppressed")
    suppressed = serializers.BooleanField()


class AggregateSerializer(serializers.Serializer):
    vertical = serializers.CharField()
    group_by = serializers.CharField(allow_null=True)
    min_cell = serializers.IntegerField()
    total = serializers.IntegerField(allow_null=True)
    total_suppressed = serializers.BooleanField()
    cells = AggregateCellSerializer(many=True)


class IntegrationDescriptionSerializer(serializers.Serializer):
    integration_id = serializers.UUIDField()
    integration_name = serializers.CharField()
    status = serializers.CharField()
    verticals = serializers.ListField(child=serializers.CharField())
    data_contract_ref = serializers.CharField()
    active_from = serializers.DateTimeField()
    active_until = serializers.DateTimeField(allow_null=True)


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    request_id = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())


class SubscriptionCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    event_types = serializers.ListField(child=serializers.CharField(max_length=40), min_length=1, max_length=10)


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField()
    event_types = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    secret = serializers.CharField(required=False, help_text="whsec_... shown once, at creation")


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    timestamp = serializers.DateTimeField()
    data = serializers.DictField()


class EventFeedSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next_cursor = serializers.IntegerField()


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    vertical = serializers.CharField(max_length=40)
    record_type = serializers.CharField(max_length=60)


JOB_STATUSES = ["queued", "running", "completed", "failed"]


class ImportJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JOB_STATUSES)
    vertical = serializers.CharField()
    record_type = serializers.CharField()
    format = serializers.CharField()
    rows_total = serializers.IntegerField()
    rows_done = serializers.IntegerField()
    rows_failed = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True, help_text="why the job failed, or is being tried again")
    rows_per_second = serializers.FloatField()
    eta_seconds = serializers.IntegerField(allow_null=True)
    errors_url = serializers.URLField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ExportRequestSerializer(serializers.Serializer):
    vertical = serializers.CharField(max_length=40)
    format = serializers.ChoiceField(choices=["ndjson", "csv"], default="ndjson")


class ExportJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JOB_STATUSES)
    vertical = serializers.CharField()
    format = serializers.CharField()
    rows_written = serializers.IntegerField()
    rows_excluded = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True, help_text="why the job failed, or is being tried again")
    download_url = serializers.URLField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
