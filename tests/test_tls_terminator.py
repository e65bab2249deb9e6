"""Through the real nginx TLS terminator (Debian's package, the repo's configuration):
TLS 1.1 is refused, TLS 1.2 and 1.3 succeed, plain HTTP serves no API, and a high-risk
integration must present its pinned client certificate."""
import socket
import ssl

import pytest
import requests

from lifecycle import services

from .exchange_helpers import activate
from .tls import Nginx

pytestmark = pytest.mark.django_db(transaction=True)
TLS_PORT, PLAIN_PORT = 8443, 8081


@pytest.fixture
def nginx(live_server, tmp_path):
    upstream = live_server.url.removeprefix("http://")
    terminator = Nginx(tmp_path, upstream=upstream, tls_port=TLS_PORT, plain_port=PLAIN_PORT).start()
    yield terminator
    terminator.stop()


def _handshake(nginx, version):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(nginx.pki["ca"])
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer old protocols: the server must refuse
    with socket.create_connection(("127.0.0.1", TLS_PORT), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()


def test_tls_1_1_is_refused_by_the_server_and_1_2_and_1_3_succeed(nginx):
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(nginx, ssl.TLSVersion.TLSv1_1)
    # The server's alert ("tlsv1 alert protocol version"), not a client-side refusal to offer TLS 1.1.
    assert "ALERT" in str(refused.value).upper()
    assert "PROTOCOL_VERSION" in str(refused.value).upper() or "UNSUPPORTED_PROTOCOL" in str(refused.value).upper()
    assert _handshake(nginx, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(nginx, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_plain_http_serves_no_api(nginx):
    api = requests.get(f"http://127.0.0.1:{PLAIN_PORT}/api/v1/persons/", timeout=5, allow_redirects=False)
    assert api.status_code == 403 and api.headers["Content-Type"] == "application/problem+json"
    portal = requests.get(f"http://127.0.0.1:{PLAIN_PORT}/admin/", timeout=5, allow_redirects=False)
    assert portal.status_code == 301 and portal.headers["Location"].startswith(f"https://127.0.0.1:{TLS_PORT}/")


def test_high_risk_integration_needs_its_pinned_client_certificate(nginx, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="high risk")
    url = f"https://127.0.0.1:{TLS_PORT}/api/v1/persons/?vertical=health"
    auth = {"Authorization": f"Bearer {partner.token}"}
    ca = nginx.pki["ca"]
    assert requests.get(url, headers=auth, verify=ca, timeout=10).status_code == 200
    services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], high_risk=True,
        client_cert_sha256=nginx.pki["client_sha256"],
    )
    response = requests.get(url, headers=auth, verify=ca, timeout=10)
    assert response.status_code == 403 and response.json()["code"] == "client_certificate_required"
    # A forged verification header from the client is overwritten by the terminator.
    forged = {**auth, "X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-Cert": "forged"}
    assert requests.get(url, headers=forged, verify=ca, timeout=10).status_code == 403
    with_cert = requests.get(url, headers=auth, verify=ca, cert=(nginx.pki["client_cert"], nginx.pki["client_key"]), timeout=10)
    assert with_cert.status_code == 200, with_cert.text
