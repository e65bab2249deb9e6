"""Webhook subscriptions and the pull feed of events."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from audit.models import DisclosureChannel as Channel
from scp_core.errors import ApiError

from .. import events as events_module
from .. import webhooks
from ..models import Event, EventType, Subscription
from ..serializers import (
    EventFeedSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
)
from .base import ERRORS, GovernedAPIView


class SubscriptionView(GovernedAPIView):
    @extend_schema(operation_id="subscriptions_list", responses={200: SubscriptionSerializer(many=True), **ERRORS})
    def get(self, request):
        """The integration's webhook subscriptions (secrets are not shown again)."""
        subscriptions = Subscription.objects.filter(integration=self.principal.integration).order_by("created_at")
        return Response([
            {"id": str(s.id), "url": s.url, "event_types": s.event_types, "active": s.active} for s in subscriptions
        ])

    @extend_schema(operation_id="subscriptions_create", request=SubscriptionCreateSerializer,
                   responses={201: SubscriptionSerializer, **ERRORS})
    def post(self, request):
        """Subscribe an HTTPS endpoint to event types; the signing secret is answered once."""
        body = SubscriptionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        types = body.validated_data["event_types"]
        unknown = sorted(set(types) - set(EventType.values))
        if unknown:
            raise ApiError(422, "validation_error", "Unknown event types.",
                           errors=[{"field": "event_types", "message": f"unknown: {t}"} for t in unknown])
        webhooks.check_target(body.validated_data["url"])
        subscription = Subscription.objects.create(
            integration=self.principal.integration, url=body.validated_data["url"], event_types=sorted(set(types)),
            secret=webhooks.new_secret(),
        )
        self.audit_details(subscription=str(subscription.id), event_types=subscription.event_types)
        return Response({"id": str(subscription.id), "url": subscription.url, "event_types": subscription.event_types,
                         "active": True, "secret": subscription.secret}, status=201, headers={"Cache-Control": "no-store"})


class EventFeedView(GovernedAPIView):
    @extend_schema(
        operation_id="events_list",
        parameters=[OpenApiParameter("cursor", OpenApiTypes.INT, required=False, description="the last event id seen"),
                    OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="1 to 500")],
        responses={200: EventFeedSerializer, **ERRORS},
    )
    def get(self, request):
        """The pull feed: events after `cursor` that the integration may see now."""
        try:
            cursor = int(request.query_params.get("cursor") or 0)
            limit = min(max(int(request.query_params.get("limit") or 100), 1), 500)
            if not 0 <= cursor < 2**63:
                raise ValueError(cursor)
        except ValueError as exc:
            raise ApiError(422, "validation_error", "'cursor' and 'limit' must be integers.") from exc
        integration = self.principal.integration
        events = list(
            Event.objects.filter(tenant_id=integration.tenant_id, id__gt=cursor).select_related("vertical", "tenant")
            .order_by("id")[:limit]
        )
        # Only the verticals the token carries (the strictest intersection, as everywhere).
        in_token = [e for e in events if e.vertical_id is None or e.vertical.code in self.principal.token_verticals]
        # One consent query for the page (per vertical), not one per event.
        bodies = events_module.visible_bodies([(e, integration) for e in in_token])
        visible = [(e, body) for e, body in zip(in_token, bodies) if body is not None]
        self.audit_details(events={"scanned": len(events), "returned": len(visible)})
        self.disclose(*events_module.merged(
            r for e, body in visible if (r := events_module.release_of(e, body, integration, Channel.EVENTS_FEED))))
        return Response({
            "events": [{"id": e.id, **body} for e, body in visible],
            "next_cursor": events[-1].id if events else cursor,
        })



class SubscriptionRotateSecretView(GovernedAPIView):
    @extend_schema(operation_id="subscriptions_rotate_secret", request=None, responses={200: SubscriptionSerializer, **ERRORS})
    def post(self, request, subscription_id):
        """Issue a new signing secret (shown once); the old one stops signing at once."""
        subscription = self.in_scope_or_404(Subscription.objects.filter(integration=self.principal.integration), subscription_id)
        subscription.secret = webhooks.new_secret()
        subscription.save(update_fields=["secret"])
        self.audit_details(subscription=str(subscription.id), secret_rotated=True)
        return Response({"id": str(subscription.id), "url": subscription.url, "event_types": subscription.event_types,
                         "active": subscription.active, "secret": subscription.secret}, headers={"Cache-Control": "no-store"})
