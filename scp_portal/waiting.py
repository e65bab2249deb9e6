"""What waits for a person's action now (issue #14 item 1): each role's portal home and the
governance API's `waiting/` list the same items, with counts and links, scoped by the same
role rules as the screens they link to."""
import datetime
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from audit.models import Incident
from exchange.models import Connector, ConnectorStatus, Subscription
from lifecycle import credentials
from lifecycle.agreement_gate import awaiting_acceptance
from lifecycle.models import Recertification
from lifecycle.permissions import may
from lifecycle.roles import roles_of
from registry.models import Integration, IntegrationStatus

S = IntegrationStatus
EXPIRING_DAYS = 30


@dataclass(frozen=True)
class Waiting:
    kind: str
    label: str
    count: int
    url: str

    def as_dict(self):
        return asdict(self) | {"url": settings.SCP_PORTAL_URL.rstrip("/") + self.url}


def waiting_for(user, now=None):
    """The items that need this user's action now, those with a count only."""
    now = now or timezone.now()
    roles = roles_of(user)
    if not roles.any:
        return []
    visible = Integration.objects.visible_to(roles)
    items = [
        _reviews(user, roles),
        _recertifications(roles),
        _sign_offs(user, roles),
        _agreement_acceptances(roles),
        _drafts(user, visible),
        _activations(user, roles, visible),
        _incidents(roles),
        _expiring(roles, visible, now),
        _failing_connectors(roles, visible),
        _disabled_endpoints(roles, visible),
        _lapsing_recertifications(roles, now),
        _aged_credentials(roles, visible, now),
    ]
    return [item for item in items if item is not None and item.count]


def _changelist(model_admin_name, query=""):
    return reverse(f"admin:{model_admin_name}_changelist") + (f"?{query}" if query else "")


def _reviews(user, roles):
    if not roles.owned_verticals:
        return None
    # Not the requests this owner created or submitted: those are for another owner to review.
    waiting = Integration.objects.awaiting_review_by(roles).exclude(created_by=user).exclude(submitted_by=user).count()
    return Waiting("reviews", "Requests waiting for your review", waiting, _changelist("lifecycle_reviewrequest"))


def _recertifications(roles):
    if not roles.owned_verticals:
        return None
    count = Recertification.objects.answerable_by(roles).count()
    return Waiting("recertifications", "Recertifications to answer", count, _changelist("lifecycle_recertification", "status__exact=open"))


def _sign_offs(user, roles):
    if not roles.is_umbrella:
        return None
    count = (Integration.objects.filter(status=S.REVIEWED).exclude(created_by=user).exclude(submitted_by=user)
             .exclude(vertical_reviews__reviewer=user).count())
    return Waiting("sign_offs", "Reviewed requests waiting for your sign-off", count, _changelist("lifecycle_signoffrequest"))


def _agreement_acceptances(roles):
    """Agreements uploaded after the sign-off: not in force until the umbrella authority accepts."""
    if not roles.is_umbrella:
        return None
    pending = awaiting_acceptance(Integration.objects.all())
    count = pending.count()
    # One: its page, where the renewal is shown beside the one in force; more: the register.
    url = (reverse("admin:registry_integration_change", args=[pending.values_list("pk", flat=True).first()])
           if count == 1 else _changelist("registry_datasharingagreement"))
    return Waiting("agreement_acceptances", "Renewed data-sharing agreements waiting for your acceptance", count, url)


def _drafts(user, visible):
    drafts = [i for i in visible.filter(status=S.DRAFT).select_related("tenant") if may(user, "submit", i)]
    return Waiting("drafts", "Drafts to submit for review", len(drafts), _changelist("registry_integration", "status__exact=draft"))


def _activations(user, roles, visible):
    if not (roles.is_root or roles.admin_tenants):
        return None  # the umbrella authority may activate too, but activation is the operators' step
    approved = [i for i in visible.filter(status=S.APPROVED) if may(user, "activate", i)]
    return Waiting("activations", "Approved integrations to activate", len(approved),
                   _changelist("registry_integration", "status__exact=approved"))


def _incidents(roles):
    if not roles.sees_everything:
        return None  # the incidents screen is the global roles' (tenant admins see theirs in compliance)
    count = Incident.objects.filter(resolved_at__isnull=True).count()
    return Waiting("incidents", "Open incidents", count, _changelist("audit_incident", "resolved_at__isnull=True"))


def _operated(roles, visible):
    """Integrations whose operation is this person's: their tenants' (admins), their own (partners)."""
    if roles.is_root or roles.is_umbrella:
        return visible
    # Not operated_by(): an auditor reads every integration but operates none.
    return visible.filter(Q(tenant_id__in=roles.admin_tenants) | Q(partner_id__in=roles.partners))


def _expiring(roles, visible, now):
    count = _operated(roles, visible).serving().filter(
        active_until__gt=now, active_until__lte=now + datetime.timedelta(days=EXPIRING_DAYS)).count()
    # The compliance view explains each; a partner's own pages show its integrations' windows.
    url = reverse("partner-home") if _partner_only(roles) else reverse("monitoring-compliance")
    return Waiting("expiring", f"Integrations ending within {EXPIRING_DAYS} days", count, url)


def _failing_connectors(roles, visible):
    if not (roles.is_root or roles.admin_tenants):
        return None
    count = Connector.objects.filter(integration__in=_operated(roles, visible)).exclude(status=ConnectorStatus.HEALTHY).count()
    return Waiting("failing_connectors", "Connectors failing or degraded", count,
                   _changelist("exchange_connector"))


def _disabled_endpoints(roles, visible):
    count = Subscription.objects.filter(integration__in=_operated(roles, visible), active=False).count()
    url = reverse("partner-home") if _partner_only(roles) else _changelist("exchange_subscription", "active__exact=0")
    return Waiting("disabled_endpoints", "Webhook endpoints disabled", count, url)


def _aged_credentials(roles, visible, now):
    count = credentials.aged(_operated(roles, visible), now).count()
    url = reverse("partner-home") if _partner_only(roles) else _changelist("registry_credential")
    return Waiting("aged_credentials", "Credentials past their maximum age, to rotate", count, url)


def _partner_only(roles):
    """A partner's user, who works on the partner pages rather than the staff screens."""
    return bool(roles.partners) and not (roles.sees_everything or roles.admin_tenants or roles.owned_verticals)


def _lapsing_recertifications(roles, now):
    if not roles.admin_tenants:
        return None
    count = Recertification.objects.filter(
        integration__tenant_id__in=roles.admin_tenants, status="open", due_at__lte=now).count()
    return Waiting("overdue_recertifications", "Recertifications overdue in your tenants (restricting)", count,
                   _changelist("lifecycle_recertification", "status__exact=open"))
