"""Ed25519 signing of checkpoints with the key from settings, and the register of every key
that has signed (published to regulators with the period each was in use)."""
import base64
import hashlib
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import AuditCheckpoint, AuditSigningKey


@lru_cache(maxsize=4)
def _key(raw_b64):
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw_b64))


def public_key_b64():
    public = _key(settings.SCP_AUDIT_SIGNING_KEY).public_key()
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def key_id():
    return hashlib.sha256(public_key_b64().encode()).hexdigest()[:16]


def sign(message):
    return base64.b64encode(_key(settings.SCP_AUDIT_SIGNING_KEY).sign(message)).decode()


class RetiredKey(Exception):
    """The configured signing key was retired by a rotation: restart with the new one."""


def public_key_of(raw_b64):
    public = _key(raw_b64).public_key()
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def key_id_of(public_b64):
    return hashlib.sha256(public_b64.encode()).hexdigest()[:16]


def register_current_key():
    """The configured key's register entry, made on first use. A key that signed before the
    register existed is in use from its first checkpoint on."""
    kid = key_id()
    found = AuditSigningKey.objects.filter(key_id=kid).first()
    if found is not None:
        return found
    first = AuditCheckpoint.objects.filter(key_id=kid).order_by("id").values_list("signed_at", flat=True).first()
    since = parse_datetime(first) if first else timezone.now()
    found, _ = AuditSigningKey.objects.get_or_create(key_id=kid, defaults={"public_key": public_key_b64(), "first_used_at": since})
    return found


def signing_key():
    """The register entry of the key to sign with now; refuses a retired key."""
    key = register_current_key()
    if key.retired_at is not None:
        raise RetiredKey(f"the audit signing key {key.key_id} was retired at {key.retired_at.isoformat()}; "
                         "restart with the new key (SCP_AUDIT_SIGNING_KEY)")
    return key


def trusted_public_keys():
    """The public keys verification trusts: the configured signing key's and the earlier keys
    the operator published (SCP_AUDIT_PUBLISHED_KEYS). Taken from the configuration, never
    from the database: someone who can write the database cannot add a key of their own."""
    return [public_key_b64(), *settings.SCP_AUDIT_PUBLISHED_KEYS]


def published_keys():
    """{key_id: AuditSigningKey} of the trusted keys, each with the period it was in use (the
    register's); a register row whose key is not trusted, or whose public key differs from the
    trusted one of its id, is left out, so its checkpoints do not verify."""
    register_current_key()
    trusted = {key_id_of(public): public for public in trusted_public_keys()}
    return {k.key_id: k for k in AuditSigningKey.objects.filter(key_id__in=trusted) if trusted[k.key_id] == k.public_key}
