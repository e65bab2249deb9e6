"""Who holds which governance role, and where (kept in the portal; see README "Roles")."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
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
