"""Who may take which governance action (spec §6.2), with separation of duties.

| action                               | who                                                        |
| ------------------------------------ | ---------------------------------------------------------- |
| create, submit                       | tenant admin of the tenant, partner user of the partner, ROOT |
| review (one vertical)                | vertical owner of that tenant and vertical                 |
| approve, reject                      | umbrella authority                                         |
| activate, restrict, suspend,         | tenant admin of the tenant, umbrella authority, ROOT       |
| reinstate, deprecate, archive,       |                                                            |
| configure (layered controls)         |                                                            |
| rotate-secret, rotate-api-key        | tenant admin of the tenant, partner user of the partner, ROOT |
| change consent                       | tenant admin of the person's tenant, ROOT                  |
| revise-template, vet-template        | umbrella authority                                         |
| configure-connector                  | tenant admin of the integration's tenant, ROOT             |
| assign-roles, configure-tenant       | ROOT                                                       |
| configure-purposes (a vocabulary)    | tenant admin of the tenant, ROOT                           |
| read-disclosures (of a person)       | tenant admin of the person's tenant, auditor               |
| embargo (an investigation's)         | umbrella authority                                         |
| recertify (one vertical)             | vertical owner of that tenant and vertical, not its requester nor its partner's user |
| upload-agreement                     | tenant admin of the tenant, partner user of the partner    |
| accept-agreement (after sign-off)    | umbrella authority                                         |
| revoke-credential                    | tenant admin of the tenant, partner user of the partner, ROOT |
| replay-delivery (a webhook's)        | tenant admin of the tenant, partner user of the partner, ROOT |

ROOT operates the platform but takes no data-access decision (review, approve, reject).
Auditors only read. Separation of duties: whoever created or submitted a request cannot
review or approve it, and a reviewer cannot also approve it.
"""
from scp_core.errors import PermissionDeniedError

from .roles import roles_of

_OPERATE = {"activate", "restrict", "suspend", "reinstate", "deprecate", "archive", "configure"}


def refusal(actor, action, integration=None, *, vertical=None, tenant=None, partner=None):
    """Why `actor` may not take `action` (a sentence), or None when they may."""
    roles = roles_of(actor)
    if not roles.any:
        return "You hold no governance role."
    tenant_id = integration.tenant_id if integration is not None else getattr(tenant, "pk", None)
    partner_id = integration.partner_id if integration is not None else getattr(partner, "pk", None)
    is_tenant_admin = tenant_id in roles.admin_tenants
    is_partner_user = partner_id in roles.partners

    if action in {"create", "submit"}:
        if roles.is_root or is_tenant_admin or is_partner_user:
            return None
        return "Only the tenant's admin or the partner's users may request an integration."
    if action == "review":
        if vertical is None or (tenant_id, vertical.pk) not in roles.owned_verticals:
            return "Only the owner of this vertical in this tenant may review it."
        if actor.pk in {integration.created_by_id, integration.submitted_by_id}:
            return "Whoever created or submitted a request cannot review it."
        return None
    if action in {"approve", "reject"}:
        if not roles.is_umbrella:
            return "Only the umbrella authority may approve or reject."
        reviewers = set(integration.vertical_reviews.values_list("reviewer_id", flat=True))
        if actor.pk in {integration.created_by_id, integration.submitted_by_id} | reviewers:
            return "Whoever created, submitted or reviewed a request cannot approve or reject it."
        return None
    if action in _OPERATE:
        if roles.is_root or roles.is_umbrella or is_tenant_admin:
            return None
        return "Only the tenant's admin, the umbrella authority or ROOT may do this."
    if action in {"rotate-secret", "rotate-api-key", "revoke-credential"}:
        if roles.is_root or is_tenant_admin or is_partner_user:
            return None
        return "Only the tenant's admin, the partner's users or ROOT may rotate or revoke credentials."
    if action == "replay-delivery":
        if roles.is_root or is_tenant_admin or is_partner_user:
            return None
        return "Only the tenant's admin, the partner's users or ROOT may replay a webhook delivery."
    if action == "recertify":
        if vertical is None or (tenant_id, vertical.pk) not in roles.owned_verticals:
            return "Only the owner of this vertical in this tenant may recertify it."
        if actor.pk in {integration.created_by_id, integration.submitted_by_id} or is_partner_user:
            return "Whoever requested an integration, or works for its partner, cannot recertify it."
        return None
    if action == "upload-agreement":
        if is_tenant_admin or is_partner_user:
            return None
        return "Only the tenant's admin or the partner's users may upload the data-sharing agreement."
    if action == "accept-agreement":
        # The agreement an integration runs under is the sign-off's: only who signs off changes it.
        if roles.is_umbrella:
            return None
        return "Only the umbrella authority may accept a data-sharing agreement after the sign-off."
    if action in {"revise-template", "vet-template"}:
        if roles.is_umbrella:
            return None
        return "Only the umbrella authority curates the shared registry."
    if action == "configure-connector":
        if roles.is_root or is_tenant_admin:
            return None
        return "Only the tenant's admin or ROOT may configure a connector."
    if action in {"assign-roles", "configure-tenant"}:
        if roles.is_root:
            return None
        return "Only ROOT may do this."
    if action == "configure-purposes":
        if roles.is_root or is_tenant_admin:
            return None
        return "Only the tenant's admin or ROOT may change its purposes."
    if action == "read-disclosures":
        if roles.is_auditor or is_tenant_admin:
            return None
        return "Only the person's tenant admin or an auditor may read the person's disclosures."
    if action == "embargo":
        if roles.is_umbrella:
            return None
        return "Only the umbrella authority may embargo disclosures."
    if action == "change-consent":
        if roles.is_root or is_tenant_admin:
            return None
        return "Only the person's tenant admin or ROOT may change consent."
    return f"Unknown action '{action}'."


def may(actor, action, integration=None, **scope):
    return refusal(actor, action, integration, **scope) is None


def require(actor, action, integration=None, **scope):
    reason = refusal(actor, action, integration, **scope)
    if reason is not None:
        raise PermissionDeniedError(reason)
