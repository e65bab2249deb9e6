from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The portal project as an app, so Django's admin finds its screens (scp_portal.admin)."""

    name = "scp_portal"
    verbose_name = "SCP Integration Layer portal"
