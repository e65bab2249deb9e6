"""The portal home's "Waiting for me" block (scp_portal.waiting)."""
from django import template

from scp_portal.waiting import waiting_for

register = template.Library()


@register.inclusion_tag("admin/_waiting.html", takes_context=True)
def waiting_for_me(context):
    return {"items": waiting_for(context["request"].user)}
