"""The governance API of credentials (issue #14 item 5): the bodies of `rotate-secret`,
`rotate-api-key` and `revoke-credential` (actions of lifecycle.actions), and the register of an
integration's credentials for whoever may see the integration."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.models import Integration

from .. import credentials
from ..roles import roles_of
from .authentication import StaffTokenAuthentication


class RotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=settings.SCP_CREDENTIAL_MAX_GRACE_SECONDS,
        help_text="How long the previous credential keeps working: 0 (it stops at once) to 604800 (7 days); "
                  f"default {credentials.DEFAULT_GRACE_SECONDS}.",
    )


class RevokeCredentialSerializer(serializers.Serializer):
    credential = serializers.IntegerField(min_value=1, help_text="the id of a previous credential in its grace period")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class CredentialSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    prefix = serializers.CharField(help_text="an API key's first characters; empty for a client secret")
    state = serializers.ChoiceField(choices=["current", "in_grace", "grace_ended", "revoked"])
    aged = serializers.BooleanField(help_text="current and older than SCP_CREDENTIAL_MAX_AGE_DAYS")
    issued_at = serializers.DateTimeField()
    issued_by = serializers.CharField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    last_use_meaning = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="the end of its grace period")
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_reason = serializers.CharField()


class IntegrationCredentialsView(APIView):
    """GET: the integration's credentials, newest first, with issue, last-use and expiry dates."""

    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="governance_integration_credentials", responses=CredentialSerializer(many=True))
    def get(self, request, integration_id):
        integration = get_object_or_404(Integration.objects.visible_to(roles_of(request.user)), pk=integration_id)
        return Response(CredentialSerializer(credentials.for_integration(integration), many=True).data)
