from django.apps import AppConfig


class ScpCoreConfig(AppConfig):
    name = "scp_core"
    verbose_name = "SCP core data"
