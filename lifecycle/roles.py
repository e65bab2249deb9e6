"""A user's governance roles, read once per request and asked questions of."""
from dataclasses import dataclass, field

from .models import Role, RoleAssignment


@dataclass(frozen=True)
class Roles:
    """What one user may act as: global roles, and tenants / (tenant, vertical) / partners."""

    user_id: int | None
    global_roles: frozenset = field(default_factory=frozenset)
    admin_tenants: frozenset = field(default_factory=frozenset)
    owned_verticals: frozenset = field(default_factory=frozenset)  # {(tenant_id, vertical_id)}
    partners: frozenset = field(default_factory=frozenset)

    @property
    def is_root(self):
        return Role.ROOT in self.global_roles

    @property
    def is_umbrella(self):
        return Role.UMBRELLA_AUTHORITY in self.global_roles

    @property
    def is_auditor(self):
        return Role.AUDITOR in self.global_roles

    @property
    def sees_everything(self):
        return bool(self.global_roles & {Role.ROOT, Role.UMBRELLA_AUTHORITY, Role.AUDITOR})

    @property
    def any(self):
        return bool(self.global_roles or self.admin_tenants or self.owned_verticals or self.partners)


def roles_of(user):
    """The roles of `user` (cached on the user object for the rest of the request)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Roles(user_id=None)
    cached = getattr(user, "_scp_roles", None)
    if cached is not None:
        return cached
    global_roles, tenants, verticals, partners = set(), set(), set(), set()
    if user.is_superuser:
        global_roles.add(Role.ROOT)
    for a in RoleAssignment.objects.filter(user=user):
        if a.role in (Role.ROOT, Role.UMBRELLA_AUTHORITY, Role.AUDITOR):
            global_roles.add(a.role)
        elif a.role == Role.TENANT_ADMIN:
            tenants.add(a.tenant_id)
        elif a.role == Role.VERTICAL_OWNER:
            verticals.add((a.tenant_id, a.vertical_id))
        elif a.role == Role.PARTNER_USER:
            partners.add(a.partner_id)
    roles = Roles(user.pk, frozenset(global_roles), frozenset(tenants), frozenset(verticals), frozenset(partners))
    user._scp_roles = roles
    return roles
