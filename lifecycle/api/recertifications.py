"""Recertifications in the governance API (issue #14 item 3): the same list and answer as the
portal's screen, through `lifecycle.recertification`."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ..models import Recertification
from ..recertification import DECISIONS, recertification_answer
from ..roles import roles_of
from .views import GovernanceView


class RecertificationSerializer(serializers.ModelSerializer):
    integration_id = serializers.UUIDField(source="integration.integration_id")
    integration_name = serializers.CharField(source="integration.integration_name")
    tenant = serializers.CharField(source="integration.tenant.code")
    vertical = serializers.CharField(source="vertical.code")
    answered_by = serializers.CharField(source="answered_by.username", default=None)

    class Meta:
        model = Recertification
        fields = ["id", "integration_id", "integration_name", "tenant", "vertical", "status", "opened_at", "due_at",
                  "lapse_stage", "snapshot", "answered_by", "answered_at", "reason", "approved_fields"]


class AnswerSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DECISIONS)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    approved_fields = serializers.ListField(child=serializers.CharField(max_length=120), required=False, default=list,
                                            max_length=200)


def _visible(request):
    return Recertification.objects.visible_to(roles_of(request.user)).select_related(
        "integration__tenant", "vertical", "answered_by")


class RecertificationListView(GovernanceView):
    @extend_schema(operation_id="governance_recertifications_list", responses=RecertificationSerializer(many=True))
    def get(self, request):
        queryset = _visible(request)
        if request.query_params.get("status"):
            queryset = queryset.filter(status=request.query_params["status"])
        return Response(RecertificationSerializer(queryset[:500], many=True).data)


class RecertificationAnswerView(GovernanceView):
    @extend_schema(operation_id="governance_recertifications_answer", request=AnswerSerializer,
                   responses=RecertificationSerializer)
    def post(self, request, recertification_id):
        recertification = get_object_or_404(_visible(request), pk=recertification_id)
        body = AnswerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        answered = recertification_answer(recertification=recertification, actor=request.user,
                                          request_id=request._request.request_id, **body.validated_data)
        return Response(RecertificationSerializer(answered).data)
