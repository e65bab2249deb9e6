"""The portal's screens (the Django admin): every app's models, scoped by governance role
(`scoping`), calling the apps' services. They live in the portal, the top layer, because they
reach into every app; Django finds them here as this app's admin module."""
from . import agreements, audit, core, credentials, exchange, lifecycle, notifications, recertification, registry  # noqa: F401 (each registers its screens)
