"""The portal home's link to the partner pages (scp_portal.partner_views), for whoever may open them."""
from django import template

from lifecycle.roles import roles_of
from scp_portal.partner_views import partner_integrations

register = template.Library()


@register.inclusion_tag("admin/partner/_home_link.html", takes_context=True)
def partner_pages_link(context):
    roles = roles_of(context["request"].user)
    return {"shown": partner_integrations(roles) is not None, "own": bool(roles.partners)}
