"""Everyday governance (issue #14): e-mail notifications, data-sharing agreements,
recertification and credential rotation."""
from .base import BASE_DIR
from .envtools import env, env_bool, env_int

# Django's SMTP backend, configured from the environment; with no EMAIL_HOST (the embedded
# default) messages are printed on the console instead.
EMAIL_HOST = env("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "SCP Integration Layer <no-reply@scp.example>")
# Links in e-mails point here.
SCP_PORTAL_URL = env("SCP_PORTAL_URL", "http://127.0.0.1:8000")

# Agreement documents live outside the web root, served only through the portal's checks.
SCP_AGREEMENTS_DIR = env("SCP_AGREEMENTS_DIR", str(BASE_DIR / "var" / "agreements"))
SCP_AGREEMENT_MAX_BYTES = env_int("SCP_AGREEMENT_MAX_BYTES", 10 * 1024 * 1024)
# Every upload is kept: at most this many per integration in any 24 hours (then 429).
SCP_AGREEMENT_MAX_PER_DAY = env_int("SCP_AGREEMENT_MAX_PER_DAY", 5)

# Credentials older than this are flagged and their owners told.
SCP_CREDENTIAL_MAX_AGE_DAYS = env_int("SCP_CREDENTIAL_MAX_AGE_DAYS", 365)
# The longest grace period a rotation may give the old credential.
SCP_CREDENTIAL_MAX_GRACE_SECONDS = 7 * 24 * 3600
