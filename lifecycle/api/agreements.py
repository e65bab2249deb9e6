"""The governance API of data-sharing agreements (issue #14 item 4): upload one (multipart) and
list an integration's agreements; download a document. Thin views over lifecycle.agreements;
the integration is looked up among those the caller may see (others: 404)."""
import base64
import json

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from registry.models import DataSharingAgreement

from ..agreements import agreement_document, agreement_upload
from ..permissions import require
from .views import GovernanceView


class _TextList(serializers.ListField):
    """A list of strings given as repeated form fields, or as one field holding a JSON list."""

    child = serializers.CharField(max_length=300)

    def to_internal_value(self, data):
        if isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], str) and data[0].lstrip().startswith("["):
            data = data[0]
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise serializers.ValidationError("a JSON list of strings or repeated fields is required") from exc
        return super().to_internal_value(data)


class AgreementUploadSerializer(serializers.Serializer):
    document = serializers.FileField(help_text="PDF, plain text (UTF-8), ODT or DOCX; at most SCP_AGREEMENT_MAX_BYTES")
    signatories = _TextList(help_text="who signed, for whom: [\"name (organization)\", ...]")
    purposes = _TextList(help_text="purpose codes of the tenant, the integration's own among them")
    fields = _TextList(help_text="fields the partner may receive, from the data contract ('record_type.field' for records)")
    retention_days = serializers.IntegerField(min_value=1)
    effective_from = serializers.DateField()
    expires_on = serializers.DateField()


class AgreementSerializer(serializers.ModelSerializer):
    integration_id = serializers.UUIDField(source="integration.pk", read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True)
    download = serializers.SerializerMethodField()

    class Meta:
        model = DataSharingAgreement
        fields = ["id", "integration_id", "filename", "content_type", "size", "sha256", "signatories", "purposes", "fields",
                  "retention_days", "effective_from", "expires_on", "uploaded_by", "uploaded_at", "download"]
        read_only_fields = fields

    def get_download(self, obj) -> str:
        path = reverse("governance-integration-agreement-document", args=[obj.integration_id, obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class IntegrationAgreementsView(GovernanceView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(operation_id="governance_integration_agreements_list", responses=AgreementSerializer(many=True))
    def get(self, request, integration_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        agreements = integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk")
        return Response(AgreementSerializer(agreements, many=True, context={"request": request}).data)

    @extend_schema(operation_id="governance_integration_agreements_upload",
                   request={"multipart/form-data": AgreementUploadSerializer}, responses={201: AgreementSerializer},
                   description="Upload the integration's data-sharing agreement (a renewal is a new one). 413 "
                   "payload_too_large, 415 unsupported_media_type (judged by the document's content), 422 "
                   "validation_error naming each field at fault.")
    def post(self, request, integration_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        # Refused before the body is parsed: who may not upload does not get to send 10 MB.
        require(request.user, "upload-agreement", integration)
        body = AgreementUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agreement = agreement_upload(integration=integration, actor=request.user, request_id=request._request.request_id,
                                     **body.validated_data)
        return Response(AgreementSerializer(agreement, context={"request": request}).data, status=status.HTTP_201_CREATED)


class AgreementDocumentView(GovernanceView):
    @extend_schema(operation_id="governance_integration_agreement_document", responses={(200, "*/*"): OpenApiTypes.BINARY},
                   description="The agreement's document as uploaded, checked against its pinned SHA-256 (also sent "
                   "as `Repr-Digest`); audited.")
    def get(self, request, integration_id, agreement_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        agreement = get_object_or_404(integration.agreements.all(), pk=agreement_id)
        handle = agreement_document(agreement=agreement, actor=request.user, request_id=request._request.request_id,
                                    via="api")
        return document_response(agreement, handle)


def document_response(agreement, handle):
    """The stored document as an attachment of the type it was found to be, never rendered."""
    content_type = agreement.content_type + ("; charset=utf-8" if agreement.content_type == "text/plain" else "")
    response = FileResponse(handle, as_attachment=True, filename=agreement.filename, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    # RFC 9530: the client can check what it received against the pinned hash.
    response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(agreement.sha256)).decode()}:"
    return response
