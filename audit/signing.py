"""Ed25519 signing of checkpoints with the key from settings."""
import base64
import hashlib
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings


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
