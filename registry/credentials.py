"""API keys of integrations (spec §7.2, a secondary identifier): made when the layered
controls are configured, stored only as a SHA-256 hash, compared by the exchange."""
import hashlib
import secrets


def hash_api_key(key):
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key():
    """A fresh API key and the (prefix, hash) stored for it; the key itself is never stored."""
    key = "scpk_" + secrets.token_urlsafe(32)
    return key, key[:12], hash_api_key(key)
