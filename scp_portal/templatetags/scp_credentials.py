"""The credentials panel of an integration's page (issue #14 item 5; scp_portal.admin.credentials)."""
from django import template

from lifecycle import credentials
from registry.models import Integration
from scp_portal.admin.credentials import panel

register = template.Library()


@register.simple_tag(takes_context=True)
def credentials_panel(context, integration):
    """The register, flags and links of the panel (templates/admin/credentials/_panel.html);
    None on a page without a saved integration (the request form)."""
    if not isinstance(integration, Integration) or integration._state.adding:
        return None
    return panel(context["request"], integration)


@register.simple_tag
def token_minutes():
    """At most how many minutes tokens obtained with a client secret outlive its end."""
    return credentials.token_minutes()
