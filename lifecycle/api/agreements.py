"""The governance API of data-sharing agreements (issue #14 item 4): upload one (multipart) and
list an integration's agreements with their state; download a document. Thin views over
lifecycle.agreements; the integration is looked up among those the caller may see (others: 404).
Accepting an upload after the sign-off is the lifecycle action `accept-agreement`."""
import base64

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from ..agreements import agreement_document, agreement_upload, check_upload_allowance
from ..permissions import require
from .agreement_serializers import AgreementSerializer, AgreementUploadSerializer, agreement_context
from .views import GovernanceView


class IntegrationAgreementsView(GovernanceView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(operation_id="governance_integration_agreements_list", responses=AgreementSerializer(many=True))
    def get(self, request, integration_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        agreements = integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk")
        return Response(AgreementSerializer(agreements, many=True, context=agreement_context(integration, request)).data)

    @extend_schema(operation_id="governance_integration_agreements_upload",
                   request={"multipart/form-data": AgreementUploadSerializer}, responses={201: AgreementSerializer},
                   description="Upload the integration's data-sharing agreement (a renewal is a new one). Before "
                   "the sign-off it is the one the umbrella authority approves; after it, it waits for the umbrella "
                   "authority's `accept-agreement` action (state `pending_acceptance`) and the approved one stays in "
                   "force. 413 payload_too_large, 415 unsupported_media_type (judged by the document's content), 422 "
                   "validation_error naming each field at fault (its terms must cover the integration's purpose and "
                   "every field it reads), 429 rate_limited with Retry-After (at most SCP_AGREEMENT_MAX_PER_DAY "
                   "uploads per integration in 24 hours).")
    def post(self, request, integration_id):
        integration = get_object_or_404(self.visible_integrations(), pk=integration_id)
        # Refused before the body is parsed: who may not upload, or has used up the day's
        # uploads, does not get to send 10 MB.
        require(request.user, "upload-agreement", integration)
        check_upload_allowance(integration)
        body = AgreementUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agreement = agreement_upload(integration=integration, actor=request.user, request_id=request._request.request_id,
                                     **body.validated_data)
        integration.refresh_from_db()
        return Response(AgreementSerializer(agreement, context=agreement_context(integration, request)).data,
                        status=status.HTTP_201_CREATED)


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
