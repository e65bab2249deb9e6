"""Who holds which governance role, and where (kept in the portal; see README "Roles")."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from registry.models import Integration


class Role(models.TextChoices):
    ROOT = "root", "ROOT (platform operator)"
    UMBRELLA_AUTHORITY = "umbrella_authority", "umbrella authority"
    AUDITOR = "auditor", "auditor (read-only)"
    TENANT_ADMIN = "tenant_admin", "tenant admin"
    VERTICAL_OWNER = "vertical_owner", "vertical owner"
    PARTNER_USER = "partner_user", "partner user"


# Which scope each role needs: a tenant, a tenant and a vertical, a partner, or none.
_SCOPE = {
    Role.ROOT: set(),
    Role.UMBRELLA_AUTHORITY: set(),
    Role.AUDITOR: set(),
    Role.TENANT_ADMIN: {"tenant"},
    Role.VERTICAL_OWNER: {"tenant", "vertical"},
    Role.PARTNER_USER: {"partner"},
}


class RoleAssignment(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.CharField(max_length=30, choices=Role.choices)
    tenant = models.ForeignKey("scp_core.Tenant", null=True, blank=True, on_delete=models.CASCADE)
    vertical = models.ForeignKey("scp_core.Vertical", null=True, blank=True, on_delete=models.CASCADE)
    partner = models.ForeignKey("registry.Partner", null=True, blank=True, on_delete=models.CASCADE)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "role", "tenant", "vertical", "partner"],
                name="role_assignment_unique",
                nulls_distinct=False,
            ),
        ]

    def __str__(self):
        scope = "/".join(str(x) for x in (self.tenant and self.tenant.code, self.vertical, self.partner) if x)
        return f"{self.user} — {self.get_role_display()}{' @ ' + scope if scope else ''}"

    def clean(self):
        needed = _SCOPE[Role(self.role)]
        given = {name for name in ("tenant", "vertical", "partner") if getattr(self, f"{name}_id")}
        if given != needed:
            raise ValidationError(
                f"A {self.get_role_display()} assignment needs exactly: {', '.join(sorted(needed)) or 'no scope'}."
            )


class ReviewRequest(Integration):
    """Requests waiting for a vertical owner's review (a portal queue over integrations)."""

    class Meta:
        proxy = True
        verbose_name = "review request"
        verbose_name_plural = "review queue"


class SignOffRequest(Integration):
    """Reviewed requests waiting for the umbrella authority's sign-off."""

    class Meta:
        proxy = True
        verbose_name = "sign-off request"
        verbose_name_plural = "sign-off queue"


class NotificationEvent(models.TextChoices):
    """What people are told by e-mail (issue #14), each with its recipients in lifecycle.notifications."""

    REQUEST_SUBMITTED = "request_submitted", "request submitted"
    REVIEWS_COMPLETE = "reviews_complete", "all reviews in"
    APPROVED = "approved", "approved"
    ACTIVATED = "activated", "activated"
    RESTRICTED = "restricted", "restricted"
    SUSPENDED = "suspended", "suspended"
    DEPRECATED = "deprecated", "deprecated"
    EXPIRING = "expiring", "nearing active_until"
    ENDPOINT_DISABLED = "endpoint_disabled", "webhook endpoint disabled"
    CONNECTOR_FAILING = "connector_failing", "connector failing"
    RECERTIFICATION_DUE = "recertification_due", "recertification due"
    RECERTIFICATION_LAPSED = "recertification_lapsed", "recertification lapsed"
    CREDENTIAL_AGED = "credential_aged", "credential past its maximum age"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENDING = "sending", "sending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class Notification(models.Model):
    """One e-mail to one recipient about one event. `key` makes it one per event and
    recipient: a retried task or a repeated sweep finds the row and sends nothing again."""

    key = models.CharField(max_length=255, unique=True)
    event = models.CharField(max_length=30, choices=NotificationEvent.choices)
    tenant = models.ForeignKey("scp_core.Tenant", null=True, blank=True, on_delete=models.PROTECT)
    integration = models.ForeignKey("registry.Integration", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recipient = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="After a refusal: not sent again before.")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return f"{self.get_event_display()} → {self.recipient} ({self.status})"


class RecertificationStatus(models.TextChoices):
    OPEN = "open", "open"
    CONFIRMED = "confirmed", "confirmed"
    NARROWED = "narrowed", "narrowed"
    REVOKED = "revoked", "revoked"
    LAPSED = "lapsed", "lapsed (no answer)"


class RecertificationQuerySet(models.QuerySet):
    def visible_to(self, roles):
        """Owners see their verticals' recertifications, tenant admins their tenants', the
        global roles all; partners none (the owners' deliberation is not theirs)."""
        if roles.sees_everything:
            return self
        q = models.Q(integration__tenant_id__in=roles.admin_tenants)
        for tenant_id, vertical_id in roles.owned_verticals:
            q |= models.Q(integration__tenant_id=tenant_id, vertical_id=vertical_id)
        return self.filter(q)

    def answerable_by(self, roles):
        """Open ones in the verticals these roles own."""
        q = models.Q(pk__in=[])
        for tenant_id, vertical_id in roles.owned_verticals:
            q |= models.Q(integration__tenant_id=tenant_id, vertical_id=vertical_id)
        return self.filter(q, status=RecertificationStatus.OPEN)


class Recertification(models.Model):
    """One vertical owner's periodic re-approval of one integration in one vertical (issue #14).

    Opened `recertification_interval_days` after the last approval; unanswered by `due_at` the
    integration is restricted, and suspended after as long again (`lapse_stage`)."""

    integration = models.ForeignKey("registry.Integration", on_delete=models.PROTECT, related_name="recertifications")
    vertical = models.ForeignKey("scp_core.Vertical", on_delete=models.PROTECT)
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=RecertificationStatus.choices, default=RecertificationStatus.OPEN)
    lapse_stage = models.CharField(max_length=12, blank=True, help_text="restricted, then suspended, when unanswered.")
    # What the owner was shown: scope, purpose, last use and volume since the last approval.
    snapshot = models.JSONField(default=dict)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    answered_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    approved_fields = models.JSONField(default=list, blank=True)

    objects = RecertificationQuerySet.as_manager()

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "vertical"], condition=models.Q(status="open"),
                                    name="one_open_recertification_per_vertical"),
        ]

    def __str__(self):
        return f"{self.integration.integration_name} — {self.vertical.code}, due {self.due_at:%Y-%m-%d}"
