"""Shared fixtures. The suite runs on the real services started by `make test`:
PostgreSQL (the test database), Redis and Keycloak (realm `scp`)."""
import contextlib
import datetime

import pytest
import redis
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import TransactionTestCase
from django.utils import timezone
from rest_framework.test import APIClient

from lifecycle import keycloak
from lifecycle.demo import seed_reference_data
from scp_core.models import Consent, ConsentStatus, Person, Tenant, Vertical

from . import browser as browser_helpers


@pytest.fixture(scope="session", autouse=True)
def _keycloak_is_up():
    """Fail fast and clearly if the real Keycloak is not there (never skip)."""
    try:
        requests.get(f"{settings.KEYCLOAK_ISSUER}/.well-known/openid-configuration", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.exit(f"Keycloak is not reachable at {settings.KEYCLOAK_URL}: run `make services` ({exc})", returncode=3)


_ROLE_KEYS = ("USER", "PASSWORD", "OPTIONS")


@contextlib.contextmanager
def _default_connection_as(role):
    """Reconnect the default alias as another database role (its USER, PASSWORD, OPTIONS)."""
    params = connections["default"].settings_dict
    before = {key: params[key] for key in _ROLE_KEYS}
    connections["default"].close()
    params.update(role)
    try:
        yield
    finally:
        connections["default"].close()
        params.update(before)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database is created and migrated by the owner (as a deployment's `migrate`);
    the tests then run as the application role, the retention purge (alias `purge`) as the
    purge role, so that a right the code needs and a role lacks fails a test."""
    params = connections["default"].settings_dict
    owner = {key: params[key] for key in _ROLE_KEYS}
    application = {key: settings.SCP_TEST_APP_DATABASE[key] for key in _ROLE_KEYS}
    purge_role = settings.DATABASES["purge"]
    # Django made `purge` a mirror of the test database with the owner's credentials.
    purge = {**params, "USER": purge_role["USER"], "PASSWORD": purge_role["PASSWORD"], "OPTIONS": purge_role["OPTIONS"],
             "TEST": {**params["TEST"], "MIRROR": "default"}}
    connections["purge"].close()
    connections.settings["purge"] = connections["purge"].settings_dict = purge
    connections["default"].close()
    params.update(application)
    TransactionTestCase._fixture_teardown = _as_owner(TransactionTestCase._fixture_teardown, owner)
    yield
    connections["default"].close()
    params.update(owner)  # the owner drops the test database


def _as_owner(fixture_teardown, owner):
    """Between transactional tests Django empties every table (TRUNCATE): the owner's right
    alone, in a maintenance session (test settings), never the application role's."""

    def flush_as_owner(self):
        with _default_connection_as(owner):
            fixture_teardown(self)
    return flush_as_owner


@pytest.fixture(autouse=True)
def _fresh_authentication_failure_counters():
    """Failed authentications are counted per address and window in the real Redis; each test
    starts with none counted, as its database starts empty."""
    client = redis.Redis.from_url(settings.SCP_REDIS_URL)
    try:
        keys = list(client.scan_iter("scp:authfail:*"))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass  # Redis is down (an outage test stopped it): nothing is counted either


@pytest.fixture(autouse=True)
def _connector_files_in_the_tests_own_folder(settings, tmp_path):
    """CSV connectors read only below SCP_CONNECTOR_FILES_DIR: each test's own folder."""
    settings.SCP_CONNECTOR_FILES_DIR = str(tmp_path)


@pytest.fixture
def demo(db):
    """Reference data of the contract (tenants, verticals, partner, template, staff users)."""
    seed_reference_data()
    return {
        "ke": Tenant.objects.get(code="ke"),
        "ug": Tenant.objects.get(code="ug"),
        "health": Vertical.objects.get(code="health"),
        "education": Vertical.objects.get(code="education"),
    }


@pytest.fixture
def root_user(demo):
    return get_user_model().objects.get(username="root")


@pytest.fixture
def staff(demo):
    """The contract's demo staff users by username, with their roles (seed_demo's)."""
    return {u.username: u for u in get_user_model().objects.all()}


def make_person(tenant, national_id, consents=(), **fields):
    """A person with consents given as (vertical, status[, effective_at]) tuples."""
    defaults = {
        "given_name": "Test",
        "family_name": f"Person{national_id}",
        "birth_date": datetime.date(1990, 5, 17),
        "sex": "F",
        "phone": "+254700000000",
        "district": "Nairobi",
    }
    person = Person.objects.create(tenant=tenant, national_id=national_id, **{**defaults, **fields})
    earlier = timezone.now() - datetime.timedelta(days=1)
    for vertical, status, *rest in consents:
        Consent.objects.create(
            person=person,
            vertical=vertical,
            status=status,
            prior_status=ConsentStatus.GRANTED if status == ConsentStatus.WITHDRAWN else "",
            effective_at=rest[0] if rest else earlier,
        )
    return person


def user_token(username):
    """A staff user's access token from Keycloak's real token endpoint (scp-cli, dev realm)."""
    response = requests.post(
        settings.KEYCLOAK_TOKEN_URL,
        data={"grant_type": "password", "client_id": "scp-cli", "username": username, "password": username},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def client_token(client_id, client_secret):
    """An integration's access token by the client-credentials grant; returns the response."""
    return requests.post(
        settings.KEYCLOAK_TOKEN_URL,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
        timeout=10,
    )


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def keycloak_clients():
    """Collects Keycloak clientIds created by a test and deletes them afterwards."""
    created = []
    yield created
    for client_id in created:
        keycloak.delete_client(client_id)


@pytest.fixture(scope="module")
def browser():
    """Chromium, one per browser test module (tests/browser.py)."""
    yield from browser_helpers.launch()


@pytest.fixture(scope="session")
def client_cert():
    """A self-signed client certificate: (PEM, SHA-256 fingerprint hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-health partner")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert.fingerprint(hashes.SHA256()).hex()
