"""`GET /api/v1/governance/waiting/`: the portal home's "Waiting for me" list, for a staff token."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from lifecycle.api.views import GovernanceView

from .waiting import waiting_for



class _Item(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()
    url = serializers.URLField()


class WaitingView(GovernanceView):
    @extend_schema(operation_id="governance_waiting", responses=inline_serializer(
        "Waiting", {"items": _Item(many=True), "total": serializers.IntegerField()}))
    def get(self, request):
        items = [item.as_dict() for item in waiting_for(request.user)]
        return Response({"items": items, "total": sum(item["count"] for item in items)})
