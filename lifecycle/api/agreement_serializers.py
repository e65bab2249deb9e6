"""Shapes of the governance API's data-sharing agreements (issue #14 item 4): the upload's
multipart body, an agreement as listed, and the body of the `accept-agreement` action. The
lists are bounded here, before anything walks them (lifecycle.agreements bounds them again)."""
import json

from django.urls import reverse
from rest_framework import serializers

from registry.models import DataSharingAgreement

from ..agreement_gate import BEFORE_SIGN_OFF, pending_agreements
from ..agreements import MAX_FIELDS, MAX_PURPOSES, MAX_SIGNATORIES, MAX_TEXT


class _TextList(serializers.ListField):
    """A list of strings given as repeated form fields, or as one field holding a JSON list; its
    length is checked before its entries are."""

    child = serializers.CharField(max_length=MAX_TEXT)

    def to_internal_value(self, data):
        if isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], str) and data[0].lstrip().startswith("["):
            data = data[0]
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise serializers.ValidationError("a JSON list of strings or repeated fields is required") from exc
        if isinstance(data, (list, tuple)) and self.max_length is not None and len(data) > self.max_length:
            raise serializers.ValidationError(f"at most {self.max_length} entries")
        return super().to_internal_value(data)


class AgreementUploadSerializer(serializers.Serializer):
    document = serializers.FileField(help_text="PDF, plain text (UTF-8), ODT or DOCX; at most SCP_AGREEMENT_MAX_BYTES")
    signatories = _TextList(max_length=MAX_SIGNATORIES, help_text="who signed, for whom: [\"name (organization)\", ...]")
    purposes = _TextList(max_length=MAX_PURPOSES, help_text="purpose codes of the tenant, the integration's own among them")
    fields = _TextList(max_length=MAX_FIELDS, help_text="fields the partner may receive, from the data contract "
                       "('record_type.field' for records); every field the integration reads among them")
    retention_days = serializers.IntegerField(min_value=1)
    effective_from = serializers.DateField()
    expires_on = serializers.DateField()


class AgreementSerializer(serializers.ModelSerializer):
    integration_id = serializers.UUIDField(source="integration.pk", read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True)
    state = serializers.SerializerMethodField(help_text=(
        "`in_force`: the one the integration runs under (before the sign-off: the latest, the one to approve); "
        "`pending_acceptance`: uploaded after the sign-off, waiting for the umbrella authority's acceptance; "
        "`superseded`: an earlier one"))
    download = serializers.SerializerMethodField()

    class Meta:
        model = DataSharingAgreement
        fields = ["id", "integration_id", "state", "filename", "content_type", "size", "sha256", "signatories", "purposes",
                  "fields", "retention_days", "effective_from", "expires_on", "uploaded_by", "uploaded_at", "download"]
        read_only_fields = fields

    def get_state(self, obj) -> str:
        """Read from the context's `in_force` id and `pending` ids (one query for the whole list)."""
        if obj.pk == self.context.get("in_force"):
            return "in_force"
        return "pending_acceptance" if obj.pk in self.context.get("pending", ()) else "superseded"

    def get_download(self, obj) -> str:
        path = reverse("governance-integration-agreement-document", args=[obj.integration_id, obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def agreement_context(integration, request):
    """The serializer's context for an integration's agreements: which one is in force, which wait."""
    if integration.status in BEFORE_SIGN_OFF:
        latest = integration.agreements.order_by("-uploaded_at", "-pk").values_list("pk", flat=True).first()
        return {"request": request, "in_force": latest, "pending": set()}
    pending = set(pending_agreements(integration).values_list("pk", flat=True))
    return {"request": request, "in_force": integration.approved_agreement_id, "pending": pending}


class AcceptAgreementSerializer(serializers.Serializer):
    agreement = serializers.IntegerField(min_value=1, help_text="the id of an agreement uploaded after the sign-off")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)
