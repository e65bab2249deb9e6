from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = "Partner exchange API"

    def ready(self):
        from . import receivers, schema  # noqa: F401 -- connect the signal receivers, register the auth scheme
