from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    verbose_name = "Integration lifecycle"

    def ready(self):
        from .api import schema  # noqa: F401 -- registers the OpenAPI auth scheme
