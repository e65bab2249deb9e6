"""The layered controls of spec §7.2: IP allowlist, API key, client certificate pinning.

Client address and certificate come from the TLS terminator (nginx) in headers, which are
believed only when the connection itself comes from a configured trusted proxy.
"""
import hmac
import ipaddress
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings

from lifecycle import credentials
from registry.credentials import hash_api_key
from scp_core.errors import ApiError

API_KEY_HEADER = "HTTP_X_API_KEY"


def _from_trusted_proxy(request):
    return request.META.get("REMOTE_ADDR") in settings.SCP_TRUSTED_PROXIES


def client_ip(request):
    """The caller's address: X-Real-IP from a trusted proxy, else the socket's peer."""
    if _from_trusted_proxy(request) and request.META.get("HTTP_X_REAL_IP"):
        return request.META["HTTP_X_REAL_IP"]
    return request.META.get("REMOTE_ADDR")


def check_ip_allowlist(integration, ip):
    if not integration.ip_allowlist:
        return
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    if address is None or not any(address in ipaddress.ip_network(cidr, strict=False) for cidr in integration.ip_allowlist):
        raise ApiError(403, "ip_not_allowed", "Requests from this address are not allowed for this integration.")


def check_api_key(integration, request):
    """When the integration has an API key, it must be sent as X-API-Key (a secondary identifier):
    its current key (compared with the hash on the integration row, no query), or a previous key
    still in its rotation's grace period (the credential register, asked only on a mismatch)."""
    if not integration.api_key_hash:
        return
    presented = request.META.get(API_KEY_HEADER, "")
    digest = hash_api_key(presented) if presented else ""
    if digest and hmac.compare_digest(digest, integration.api_key_hash):
        credentials.api_key_used(integration, digest)
        return
    if not digest or not credentials.api_key_accepted(integration, digest):
        raise ApiError(401, "api_key_invalid", "A valid X-API-Key is required for this integration.")


def client_cert_sha256(request):
    """SHA-256 fingerprint of the client certificate verified by the TLS terminator, or None."""
    if not _from_trusted_proxy(request) or request.META.get("HTTP_X_SSL_CLIENT_VERIFY") != "SUCCESS":
        return None
    pem = unquote(request.META.get("HTTP_X_SSL_CLIENT_CERT", ""))
    if not pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    return cert.fingerprint(hashes.SHA256()).hex()


def check_client_certificate(integration, request):
    """High-risk integrations must present their pinned certificate through the terminator."""
    if not integration.high_risk:
        return
    fingerprint = client_cert_sha256(request)
    if fingerprint is None or not integration.client_cert_sha256 or not hmac.compare_digest(
        fingerprint, integration.client_cert_sha256.lower().replace(":", "")
    ):
        raise ApiError(403, "client_certificate_required", "This integration must present its pinned client certificate.")
