"""The audit trail: the Ed25519 key that signs checkpoints, and sealing."""
import base64
import hashlib

from .base import DEBUG, SECRET_KEY
from .envtools import env, env_int, env_list

# Raw 32-byte Ed25519 private key, base64 (or SCP_AUDIT_SIGNING_KEY_FILE). The embedded
# default derives a development key; production must set its own and publish the public key.
_dev_key = base64.b64encode(hashlib.sha256(f"scp-dev-audit-key:{SECRET_KEY}".encode()).digest()).decode()
SCP_AUDIT_SIGNING_KEY = env("SCP_AUDIT_SIGNING_KEY", _dev_key) if DEBUG else env("SCP_AUDIT_SIGNING_KEY")
# Public keys (base64) of earlier signing keys, published before a rotation: checkpoints they
# signed, within their periods, still verify (comma-separated).
SCP_AUDIT_PUBLISHED_KEYS = env_list("SCP_AUDIT_PUBLISHED_KEYS", [])
# Records not yet sealed this long after the newest seal are reported as inserted.
SCP_AUDIT_SEAL_GRACE_SECONDS = env_int("SCP_AUDIT_SEAL_GRACE_SECONDS", 300)
SCP_AUDIT_SEAL_BATCH = env_int("SCP_AUDIT_SEAL_BATCH", 5000)
# Monthly partitions of the audit records are created this many months ahead (PostgreSQL).
SCP_AUDIT_PARTITION_MONTHS_AHEAD = env_int("SCP_AUDIT_PARTITION_MONTHS_AHEAD", 3)

from .base import BASE_DIR  # noqa: E402

# Where portal-requested audit exports are written (one folder and one zip per job).
SCP_EXPORT_DIR = env("SCP_EXPORT_DIR", str(BASE_DIR / "var" / "exports"))
# Repeats of an unresolved incident (same kind, tenant, integration) within this many seconds
# are counted on it instead of opening another.
SCP_INCIDENT_GROUP_SECONDS = env_int("SCP_INCIDENT_GROUP_SECONDS", 3600)
# Retention of the platform chain (requests that named no tenant, failed logins); empty keeps it.
SCP_PLATFORM_AUDIT_RETENTION_DAYS = env_int("SCP_PLATFORM_AUDIT_RETENTION_DAYS", 0) or None
