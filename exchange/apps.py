from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = "Partner exchange API"

    def ready(self):
        from scp_portal import schema  # noqa: F401 -- registers the OpenAPI auth schemes
