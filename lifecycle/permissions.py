"""Who may take which lifecycle action.

The walking skeleton grants every governance action to ROOT (Django superusers) only; the
role model of the governance issue (tenant admins, vertical owners, the umbrella authority,
partner users, auditors) plugs in here, so services keep calling one function.
"""
from scp_portal.problems import PermissionDeniedError


def may(actor, action, integration=None):
    return bool(actor and actor.is_active and actor.is_superuser)


def require(actor, action, integration=None):
    if not may(actor, action, integration):
        raise PermissionDeniedError(f"You may not {action} this integration.")
