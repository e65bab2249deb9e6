"""Data-sharing agreements (issue #14 item 4): upload through the service, the governance API
and the portal; size, type and terms refused with structured errors and nothing kept; the
document pinned by its SHA-256 and checked on download; no sign-off without a current agreement
covering the purpose and every field read; its expiry refusing the exchange at once and the
sweep suspending the integration with the reason; who may upload and who may download."""
import datetime
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord, AuditResult
from lifecycle import agreements, services
from lifecycle.models import Role, RoleAssignment
from lifecycle.agreement_gate import agreement_end, awaiting_acceptance, pending_agreements
from registry.models import DataSharingAgreement, Integration, IntegrationStatus
from scp_core.errors import ApiError, InvalidTransitionError, PermissionDeniedError, ValidationFailedError
from scp_core.models import ConsentStatus
from scp_portal.monitoring import compliance
from scp_portal.waiting import waiting_for

from .agreement_helpers import agreement_terms, pdf_upload, sign_agreement, tiny_pdf
from .conftest import make_person
from .exchange_helpers import activate
from .governance_helpers import new_draft

pytestmark = pytest.mark.django_db
S = IntegrationStatus
TODAY = timezone.localdate


@pytest.fixture
def reviewed(staff, demo):
    """A ke/health integration the vertical owner approved, awaiting the umbrella authority, without an agreement."""
    integration = services.integration_submit(integration=new_draft(staff, demo, name="awaiting sign-off"), actor=staff["ke-admin"])
    return services.integration_review(integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"],
                                       decision="approve")


@pytest.fixture
def outsider(demo):
    return get_user_model().objects.create(username="outsider", is_staff=True)


@pytest.fixture(autouse=True)
def configured_folder(tmp_path):
    """Each test stores its documents in a folder of its own (engineers' runs share the machine's
    SCP_AGREEMENTS_DIR, and "nothing is kept" is checked by listing the folder); yields the
    folder the storage is configured with."""
    storage = DataSharingAgreement._meta.get_field("document").storage
    configured = storage._location
    storage._location = str(tmp_path / "agreements")
    for cached in ("base_location", "location"):
        storage.__dict__.pop(cached, None)
    yield configured
    storage._location = configured
    for cached in ("base_location", "location"):
        storage.__dict__.pop(cached, None)


def _stored_files():
    root = Path(DataSharingAgreement._meta.get_field("document").storage.location)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _api_terms(integration, **overrides):
    """The terms as a multipart form sends them (lists as repeated fields, dates as text)."""
    terms = agreement_terms(integration, **overrides)
    return {k: (v.isoformat() if isinstance(v, datetime.date) else v) for k, v in terms.items()}


def _docx():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def _odt():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr(zipfile.ZipInfo("mimetype"), agreements.ODT)  # first and stored, as ODF requires
        package.writestr("content.xml", "<office:document-content/>")
    return out.getvalue()


# --- upload through the service: stored outside the web root, pinned, audited -----------------


def test_upload_pins_the_document_by_sha256_outside_the_web_root_and_sets_the_integrations_end(
        client, staff, reviewed, configured_folder):
    content = tiny_pdf("Agreement between the Ministry of Health and ACME Health")
    agreement = sign_agreement(reviewed, staff["ke-admin"],
                               document=SimpleUploadedFile("../../etc/signed agreement.pdf", content, "application/pdf"))
    assert agreement.sha256 == hashlib.sha256(content).hexdigest() and agreement.size == len(content)
    assert agreement.content_type == "application/pdf" and agreement.filename == "signed agreement.pdf"
    stored = Path(agreement.document.path).resolve()
    assert stored.read_bytes() == content
    # Outside the web root: under the agreements folder, not the media or static roots, and
    # under a name of ours (the client's path and name are kept for display only).
    assert Path(configured_folder).resolve() == Path(settings.SCP_AGREEMENTS_DIR).resolve()
    assert stored.is_relative_to(Path(DataSharingAgreement._meta.get_field("document").storage.location).resolve())
    for web_root in (settings.MEDIA_ROOT, settings.STATIC_ROOT):
        assert not web_root or not Path(settings.SCP_AGREEMENTS_DIR).resolve().is_relative_to(Path(web_root).resolve())
    assert "signed" not in stored.name and ".." not in agreement.document.name
    client.force_login(staff["ke-admin"])
    assert client.get(agreement.document.url).status_code == 404  # nothing serves the folder
    reviewed.refresh_from_db()
    assert reviewed.agreement_until == agreement_end(agreement.expires_on)
    record = AuditRecord.objects.get(event_type=AuditEvent.AGREEMENT_UPLOADED)
    assert record.actor == "ke-admin" and record.integration_id == reviewed.pk
    assert record.details["sha256"] == agreement.sha256 and record.details["purposes"] == [reviewed.purpose_code]


def test_text_odt_and_docx_are_told_by_their_content_whatever_the_client_says(staff, reviewed):
    kinds = {
        "notes.txt": (b"Data-sharing agreement\nSigned by both parties.\n", "text/plain"),
        "signed.odt": (_odt(), agreements.ODT),
        "signed.docx": (_docx(), agreements.DOCX),
    }
    for name, (content, expected) in kinds.items():
        agreement = sign_agreement(reviewed, staff["partner-user"],
                                   document=SimpleUploadedFile(name, content, "application/octet-stream"))
        assert agreement.content_type == expected, name
        assert agreement.filename.endswith(agreements.DOCUMENT_TYPES[expected])


@pytest.mark.parametrize("name,content,declared", [
    ("agreement.pdf", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "application/pdf"),
    ("agreement.pdf", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "application/pdf"),
    ("agreement.docx", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", agreements.DOCX),
    ("agreement.docx", b"PK\x03\x04 not really a zip", agreements.DOCX),
    ("agreement.txt", "caf\u00e9".encode("latin-1") + b" \xff\xfe binary", "text/plain"),
])
def test_a_document_that_is_none_of_the_allowed_types_is_415_and_nothing_is_kept(staff, reviewed, name, content, declared):
    before = _stored_files()
    with pytest.raises(ApiError) as refused:
        sign_agreement(reviewed, staff["ke-admin"], document=SimpleUploadedFile(name, content, declared))
    assert refused.value.status_code == 415 and refused.value.code == "unsupported_media_type"
    assert not DataSharingAgreement.objects.exists() and _stored_files() == before


def test_a_zip_that_is_no_office_document_is_refused(staff, reviewed):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("payload.exe", b"MZ")
    with pytest.raises(ApiError) as refused:
        sign_agreement(reviewed, staff["ke-admin"], document=SimpleUploadedFile("a.docx", out.getvalue()))
    assert refused.value.code == "unsupported_media_type"


def test_a_document_over_the_limit_is_413(staff, reviewed, settings):
    settings.SCP_AGREEMENT_MAX_BYTES = 100
    with pytest.raises(ApiError) as refused:
        sign_agreement(reviewed, staff["ke-admin"])
    assert refused.value.status_code == 413 and refused.value.code == "payload_too_large"
    assert not DataSharingAgreement.objects.exists()


def test_terms_are_validated_each_error_naming_its_field(staff, reviewed):
    before = _stored_files()
    with pytest.raises(ValidationFailedError) as refused:
        sign_agreement(reviewed, staff["ke-admin"], signatories=[], purposes=["research", "no-such-purpose"],
                       fields=["id", "phone", "immunization.vaccine", "salary"], retention_days=0,
                       effective_from=TODAY(), expires_on=TODAY() - datetime.timedelta(days=1))
    errors = refused.value.errors
    fields = {e["field"] for e in errors}
    assert fields == {"signatories", "purposes", "fields", "retention_days", "expires_on"}
    messages = " ".join(e["message"] for e in errors)
    assert "no-such-purpose" in messages and "public_health_reporting" in messages  # its own purpose is required
    assert "phone" in messages and "salary" in messages and "immunization.vaccine" not in messages
    assert "must be after effective_from" in messages and "must be in the future" in messages
    assert not DataSharingAgreement.objects.exists() and _stored_files() == before
    with pytest.raises(ValidationFailedError) as refused:
        sign_agreement(reviewed, staff["ke-admin"], signatories="one signatory", retention_days="ten",
                       effective_from="yesterday", expires_on="2099-02-30")
    assert {e["field"] for e in refused.value.errors} == {"signatories", "retention_days", "effective_from", "expires_on"}


def test_agreements_are_appended_a_renewal_is_a_new_row_and_the_latest_sets_the_end(staff, reviewed):
    first = sign_agreement(reviewed, staff["ke-admin"], expires_on=TODAY() + datetime.timedelta(days=400))
    renewal = sign_agreement(reviewed, staff["partner-user"], expires_on=TODAY() + datetime.timedelta(days=30))
    assert DataSharingAgreement.objects.filter(integration=reviewed).count() == 2
    assert first.document.name != renewal.document.name and Path(first.document.path).exists()
    reviewed.refresh_from_db()
    assert reviewed.agreement_until == agreement_end(renewal.expires_on)


# --- who may upload --------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["auditor", "ug-admin", "ke-health-owner", "umbrella", "root", "outsider"])
def test_only_the_tenants_admin_and_the_partners_users_may_upload(staff, reviewed, outsider, username):
    actor = outsider if username == "outsider" else staff[username]
    with pytest.raises(PermissionDeniedError):
        sign_agreement(reviewed, actor)
    assert not DataSharingAgreement.objects.exists()


def test_no_agreement_is_added_to_a_rejected_integration(staff, reviewed):
    rejected = services.integration_reject(integration=reviewed, actor=staff["umbrella"], reason="not needed")
    with pytest.raises(InvalidTransitionError):
        sign_agreement(rejected, staff["ke-admin"])


@pytest.mark.parametrize("username,status", [
    ("ke-admin", 201), ("partner-user", 201), ("auditor", 403), ("ke-health-owner", 403), ("umbrella", 403),
    ("ug-admin", 404), ("ke-education-owner", 404), ("outsider", 404),
])
def test_upload_through_the_governance_api_by_role(api, staff, reviewed, outsider, username, status):
    api.force_authenticate(outsider if username == "outsider" else staff[username])
    response = api.post(f"/api/v1/governance/integrations/{reviewed.pk}/agreements/",
                        {**_api_terms(reviewed), "document": pdf_upload()}, format="multipart")
    assert response.status_code == status, response.content
    assert DataSharingAgreement.objects.filter(integration=reviewed).count() == (1 if status == 201 else 0)
    if status != 201:
        assert response["Content-Type"] == "application/problem+json"


# --- the governance API --------------------------------------------------------------------------


def test_api_upload_list_and_download_with_json_lists_and_the_pinned_hash(api, staff, reviewed):
    content = tiny_pdf("API agreement")
    api.force_authenticate(staff["ke-admin"])
    terms = _api_terms(reviewed)
    response = api.post(f"/api/v1/governance/integrations/{reviewed.pk}/agreements/", {
        **terms, "document": SimpleUploadedFile("api.pdf", content, "application/pdf"),
        "signatories": '["Wanjiru Kamau (Ministry of Health)", "Sam Okello (ACME Health)"]',  # one JSON list
        "purposes": '["public_health_reporting"]',
    }, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["signatories"] == ["Wanjiru Kamau (Ministry of Health)", "Sam Okello (ACME Health)"]
    assert body["fields"] == terms["fields"] and body["retention_days"] == 365 and body["uploaded_by"] == "ke-admin"

    api.force_authenticate(staff["auditor"])  # read-only, sees every tenant: may list and download
    listed = api.get(f"/api/v1/governance/integrations/{reviewed.pk}/agreements/").json()
    assert [a["sha256"] for a in listed] == [body["sha256"]]
    assert {"effective_from", "expires_on", "uploaded_at", "download", "purposes"} <= set(listed[0])
    download = api.get(listed[0]["download"])
    assert download.status_code == 200
    received = b"".join(download.streaming_content)
    assert received == content and hashlib.sha256(received).hexdigest() == body["sha256"]
    assert download["Content-Type"] == "application/pdf" and download["X-Content-Type-Options"] == "nosniff"
    assert download["Content-Disposition"].startswith("attachment") and "api.pdf" in download["Content-Disposition"]
    assert download["Repr-Digest"].startswith("sha-256=:")
    record = AuditRecord.objects.get(event_type=AuditEvent.AGREEMENT_DOWNLOADED)
    assert record.actor == "auditor" and record.details["sha256"] == body["sha256"] and record.details["via"] == "api"


def test_api_refuses_a_wrong_type_415_a_large_document_413_and_bad_terms_422(api, staff, reviewed, settings):
    api.force_authenticate(staff["ke-admin"])
    url = f"/api/v1/governance/integrations/{reviewed.pk}/agreements/"
    html = SimpleUploadedFile("a.pdf", b"<html><body>not a pdf</body></html>", "application/pdf")
    response = api.post(url, {**_api_terms(reviewed), "document": html}, format="multipart")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"

    response = api.post(url, {**_api_terms(reviewed, retention_days=0, purposes=["treatment"]), "document": pdf_upload()},
                        format="multipart")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert {e["field"] for e in response.json()["errors"]} >= {"retention_days"}
    response = api.post(url, {**_api_terms(reviewed, purposes=["treatment"]), "document": pdf_upload()}, format="multipart")
    assert response.status_code == 422 and response.json()["errors"] == [
        {"field": "purposes", "message": "must include the integration's purpose 'public_health_reporting'"}]
    assert api.post(url, _api_terms(reviewed), format="multipart").json()["errors"][0]["field"] == "document"
    assert api.post(url, {"document": "x"}, format="json").status_code == 415  # a file needs a multipart body

    settings.SCP_AGREEMENT_MAX_BYTES = 1000
    big = SimpleUploadedFile("big.pdf", b"%PDF-1.4\n" + b"0" * 5000, "application/pdf")
    response = api.post(url, {**_api_terms(reviewed), "document": big}, format="multipart")
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    # Far over the limit: refused from the Content-Length, before any parsing.
    huge = SimpleUploadedFile("huge.pdf", b"%PDF-1.4\n" + b"0" * 200_000, "application/pdf")
    response = api.post(url, {**_api_terms(reviewed), "document": huge}, format="multipart")
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert not DataSharingAgreement.objects.exists()


@pytest.mark.parametrize("username", ["ug-admin", "ke-education-owner", "outsider"])
def test_download_is_scoped_to_who_may_see_the_integration(api, client, staff, reviewed, outsider, username):
    agreement = sign_agreement(reviewed, staff["ke-admin"])
    user = outsider if username == "outsider" else staff[username]
    api.force_authenticate(user)
    assert api.get(f"/api/v1/governance/integrations/{reviewed.pk}/agreements/{agreement.pk}/document/").status_code == 404
    assert api.get(f"/api/v1/governance/integrations/{reviewed.pk}/agreements/").status_code == 404
    client.force_login(user)
    response = client.get(f"/admin/registry/datasharingagreement/{agreement.pk}/download/")
    assert response.status_code in (302, 403, 404) and not getattr(response, "streaming", False)
    assert not AuditRecord.objects.filter(event_type=AuditEvent.AGREEMENT_DOWNLOADED).exists()
    with pytest.raises(ApiError) as refused:
        agreements.agreement_document(agreement=agreement, actor=user)
    assert refused.value.status_code == 404


def test_a_document_changed_on_disk_is_not_served_and_the_failure_is_audited(client, staff, reviewed):
    agreement = sign_agreement(reviewed, staff["ke-admin"])
    Path(agreement.document.path).write_bytes(tiny_pdf("A forged agreement"))
    client.force_login(staff["umbrella"])
    response = client.get(f"/admin/registry/datasharingagreement/{agreement.pk}/download/")
    assert response.status_code == 500 and b"SHA-256" in response.content
    record = AuditRecord.objects.get(event_type=AuditEvent.AGREEMENT_DOWNLOADED)
    assert record.result == AuditResult.FAILURE and record.details["error"] == "sha256 mismatch"


# --- the approval gate -------------------------------------------------------------------------


def test_no_sign_off_without_an_agreement(api, staff, reviewed):
    with pytest.raises(ValidationFailedError, match="data-sharing agreement") as refused:
        services.integration_approve(integration=reviewed, actor=staff["umbrella"])
    assert refused.value.errors == [{"field": "agreement", "message": "No data-sharing agreement has been uploaded."}]
    api.force_authenticate(staff["umbrella"])
    response = api.post(f"/api/v1/governance/integrations/{reviewed.pk}/approve/", {}, format="json")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert "data-sharing agreement" in response.json()["detail"]
    assert Integration.objects.get(pk=reviewed.pk).status == S.REVIEWED
    sign_agreement(reviewed, staff["ke-admin"])
    assert services.integration_approve(integration=reviewed, actor=staff["umbrella"]).status == S.APPROVED


def test_no_sign_off_with_an_expired_agreement(staff, reviewed):
    agreement = sign_agreement(reviewed, staff["ke-admin"])
    # A year later: the agreement's last day has passed.
    DataSharingAgreement.objects.filter(pk=agreement.pk).update(expires_on=TODAY())
    with pytest.raises(ValidationFailedError, match=f"expired on {TODAY().isoformat()}"):
        services.integration_approve(integration=reviewed, actor=staff["umbrella"])


def test_no_sign_off_with_an_agreement_not_yet_in_effect(staff, reviewed):
    sign_agreement(reviewed, staff["ke-admin"], effective_from=TODAY() + datetime.timedelta(days=3))
    with pytest.raises(ValidationFailedError, match="takes effect only on"):
        services.integration_approve(integration=reviewed, actor=staff["umbrella"])


def test_no_sign_off_when_the_agreement_does_not_cover_the_purpose(staff, reviewed):
    sign_agreement(reviewed, staff["ke-admin"])
    # The declared purpose differs from the one the agreement was signed for.
    Integration.objects.filter(pk=reviewed.pk).update(purpose_code="research")
    reviewed.refresh_from_db()
    with pytest.raises(ValidationFailedError, match="does not cover the purpose 'research'"):
        services.integration_approve(integration=reviewed, actor=staff["umbrella"])


def test_no_sign_off_when_the_latest_agreement_does_not_cover_every_field_read(staff, reviewed):
    sign_agreement(reviewed, staff["ke-admin"])  # covers everything
    latest = sign_agreement(reviewed, staff["ke-admin"])  # the latest counts
    # An upload not covering every field read is refused (below); one recorded so anyway (say,
    # before that rule) does not pass the gate either.
    DataSharingAgreement.objects.filter(pk=latest.pk).update(fields=["id", "given_name"])
    with pytest.raises(ValidationFailedError) as refused:
        services.integration_approve(integration=reviewed, actor=staff["umbrella"])
    uncovered = refused.value.errors[0]["message"].split(": ", 1)[1].rstrip(".").split(", ")
    assert {"family_name", "national_id", "immunization.vaccine"} <= set(uncovered)
    assert "given_name" not in uncovered and "id" not in uncovered


def test_a_reviewers_narrowing_narrows_what_the_agreement_must_cover(staff, demo):
    integration = services.integration_submit(integration=new_draft(staff, demo), actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"],
                                              decision="approve", approved_fields=["id", "district"])
    sign_agreement(integration, staff["partner-user"], fields=["id", "district"])
    assert services.integration_approve(integration=integration, actor=staff["umbrella"]).status == S.APPROVED


# --- expiry: refused at once by the exchange, then suspended by the sweep ------------------------


def _get(api, token, path):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api.get(path)


def test_expiry_refuses_the_exchange_at_once_and_the_sweep_suspends_with_the_reason(api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="agreement ends")
    make_person(demo["ke"], "14000001", [(demo["health"], ConsentStatus.GRANTED)])
    assert _get(api, partner.token, "/api/v1/persons/?vertical=health").status_code == 200
    agreement = partner.integration.agreements.get()
    # Its expiry day arrives (the row keeps what was signed; the integration's end is now).
    DataSharingAgreement.objects.filter(pk=agreement.pk).update(expires_on=TODAY())
    Integration.objects.filter(pk=partner.integration.pk).update(agreement_until=timezone.now() - datetime.timedelta(seconds=1))

    refused = _get(api, partner.token, "/api/v1/persons/?vertical=health")
    assert refused.status_code == 403 and refused.json()["code"] == "outside_active_window"
    assert "agreement has expired" in refused.json()["detail"]
    assert Integration.objects.get(pk=partner.integration.pk).status == S.ACTIVE  # refused before any sweep

    assert agreements.sweep(timezone.now()) == {"suspended": [str(partner.integration.pk)]}
    integration = partner.refresh()
    assert integration.status == S.SUSPENDED
    reason = integration.history.first().history_change_reason
    assert reason == f"data-sharing agreement expired on {TODAY().isoformat()} (sha256 {agreement.sha256[:16]})"
    record = AuditRecord.objects.filter(integration=integration, event_type=AuditEvent.INTEGRATION_TRANSITION).latest("id")
    assert record.actor == "system" and record.details["action"] == "suspend" and "agreement expired" in record.details["reason"]
    assert agreements.sweep(timezone.now()) == {"suspended": []}  # once

    # A renewal and the reinstatement: still refused, since the renewal waits for the umbrella
    # authority's acceptance; once accepted, served again.
    renewal = sign_agreement(integration, staff["ke-admin"])
    integration = services.integration_reinstate(integration=integration, actor=staff["ke-admin"], reason="agreement renewed")
    assert _get(api, partner.token, "/api/v1/persons/?vertical=health").json()["code"] == "outside_active_window"
    agreements.agreement_accept(integration=integration, actor=staff["umbrella"], agreement=renewal)
    assert _get(api, partner.token, "/api/v1/persons/?vertical=health").status_code == 200


def test_the_agreements_end_costs_the_governed_request_no_query(api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="query count")
    make_person(demo["ke"], "14000002", [(demo["health"], ConsentStatus.GRANTED)])

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert _get(api, partner.token, "/api/v1/persons/?vertical=health").status_code == 200
        return len(captured)

    queries()  # warm caches (keys, rate-limit policy)
    with_agreement = queries()
    Integration.objects.filter(pk=partner.integration.pk).update(agreement_until=None)
    assert queries() == with_agreement


# --- the portal ------------------------------------------------------------------------------------


def _portal_form(integration, **overrides):
    terms = _api_terms(integration, **overrides)
    terms["signatories"] = "\n".join(terms["signatories"])
    return terms


def test_portal_upload_from_the_integration_page_and_display_at_sign_off(client, staff, reviewed):
    change_url = f"/admin/registry/integration/{reviewed.pk}/change/"
    upload_url = f"/admin/registry/integration/{reviewed.pk}/agreement/"
    client.force_login(staff["umbrella"])
    page = client.get(f"/admin/registry/integration/{reviewed.pk}/action/approve/").content.decode()
    assert "No agreement: this integration cannot be approved." in page and upload_url not in page

    client.force_login(staff["ke-admin"])
    assert upload_url in client.get(change_url).content.decode()
    form = client.get(upload_url)
    assert form.status_code == 200 and b'enctype="multipart/form-data"' in form.content
    content = tiny_pdf("Portal agreement")
    response = client.post(upload_url, {**_portal_form(reviewed), "document": SimpleUploadedFile("portal.pdf", content)})
    assert response.status_code == 302 and response["Location"] == change_url
    agreement = DataSharingAgreement.objects.get()
    assert agreement.sha256 == hashlib.sha256(content).hexdigest() and len(agreement.signatories) == 2

    client.force_login(staff["umbrella"])
    page = client.get(f"/admin/registry/integration/{reviewed.pk}/action/approve/").content.decode()
    for shown in (agreement.sha256, "portal.pdf", "Wanjiru Kamau (Ministry of Health, Kenya)", "365 days",
                  f"expires on {agreement.expires_on.isoformat()}", "Current: it covers the purpose"):
        assert shown in page, shown
    download = client.get(f"/admin/registry/datasharingagreement/{agreement.pk}/download/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == content
    response = client.post(f"/admin/registry/integration/{reviewed.pk}/action/approve/", {"confirm": "1"})
    assert response.status_code == 302 and Integration.objects.get(pk=reviewed.pk).status == S.APPROVED


def test_portal_sign_off_without_an_agreement_is_refused_with_the_reason(client, staff, reviewed):
    client.force_login(staff["umbrella"])
    response = client.post(f"/admin/registry/integration/{reviewed.pk}/action/approve/", {"confirm": "1"}, follow=True)
    assert "refused" in response.content.decode() and "data-sharing agreement" in response.content.decode()
    assert Integration.objects.get(pk=reviewed.pk).status == S.REVIEWED


def test_portal_upload_errors_are_shown_and_nothing_is_kept(client, staff, reviewed, settings):
    upload_url = f"/admin/registry/integration/{reviewed.pk}/agreement/"
    client.force_login(staff["partner-user"])
    html = SimpleUploadedFile("a.pdf", b"<html>no</html>", "application/pdf")
    response = client.post(upload_url, {**_portal_form(reviewed), "document": html})
    assert response.status_code == 415 and b"none of these" in response.content
    response = client.post(upload_url, {**_portal_form(reviewed, expires_on=TODAY()), "document": pdf_upload()})
    assert response.status_code == 422 and b"must be in the future" in response.content
    settings.SCP_AGREEMENT_MAX_BYTES = 1000
    response = client.post(upload_url, {**_portal_form(reviewed), "document": SimpleUploadedFile("b.pdf", b"%PDF-" + b"0" * 5000)})
    assert response.status_code == 413
    response = client.post(upload_url, {**_portal_form(reviewed), "document": SimpleUploadedFile("c.pdf", b"%PDF-" + b"0" * 100_000)})
    assert response.status_code == 413 and b"too large" in response.content  # from its Content-Length
    assert not DataSharingAgreement.objects.exists()


@pytest.mark.parametrize("username,status", [("auditor", 403), ("ke-health-owner", 403), ("umbrella", 403),
                                             ("ug-admin", 404), ("outsider", 404)])
def test_portal_upload_screen_is_refused_to_who_may_not_upload(client, staff, reviewed, outsider, username, status):
    client.force_login(outsider if username == "outsider" else staff[username])
    url = f"/admin/registry/integration/{reviewed.pk}/agreement/"
    assert client.get(url).status_code == status
    assert client.post(url, {**_portal_form(reviewed), "document": pdf_upload()}).status_code == status
    assert not DataSharingAgreement.objects.exists()


def test_the_register_of_agreements_lists_only_what_the_person_may_see(client, staff, demo, reviewed):
    ke = sign_agreement(reviewed, staff["ke-admin"], document=pdf_upload("KE-AGREEMENT.pdf"))
    ug_integration = services.integration_create(
        actor=staff["ug-admin"], tenant=demo["ug"], partner=reviewed.partner, integration_name="ug side",
        verticals=[demo["health"]], template=reviewed.template)
    ug = sign_agreement(ug_integration, staff["ug-admin"], document=pdf_upload("UG-AGREEMENT.pdf"))
    client.force_login(staff["ke-admin"])
    listing = client.get("/admin/registry/datasharingagreement/").content.decode()
    assert "KE-AGREEMENT.pdf" in listing and "UG-AGREEMENT.pdf" not in listing
    assert client.get(f"/admin/registry/datasharingagreement/{ug.pk}/change/").status_code in (302, 404)
    detail = client.get(f"/admin/registry/datasharingagreement/{ke.pk}/change/").content.decode()
    assert ke.sha256 in detail and f"/admin/registry/datasharingagreement/{ke.pk}/download/" in detail


# --- after the sign-off: a renewal waits for the umbrella authority's acceptance -----------------


def _text_upload(text="Renewed data-sharing agreement.\n", name="renewal.txt"):
    return SimpleUploadedFile(name, text.encode(), "text/plain")


def _agreements_api(api, integration):
    return f"/api/v1/governance/integrations/{integration.pk}/agreements/"


def test_the_approval_records_the_approved_agreement_on_the_integration_and_in_its_audit(staff, reviewed):
    earlier = sign_agreement(reviewed, staff["ke-admin"])
    approved = sign_agreement(reviewed, staff["partner-user"], expires_on=TODAY() + datetime.timedelta(days=200))
    integration = services.integration_approve(integration=reviewed, actor=staff["umbrella"])
    integration.refresh_from_db()
    assert integration.approved_agreement == approved != earlier
    assert integration.agreement_until == agreement_end(approved.expires_on)
    record = AuditRecord.objects.filter(integration=integration, event_type=AuditEvent.INTEGRATION_TRANSITION).latest("id")
    assert record.details["action"] == "approve"
    assert record.details["agreement_id"] == approved.pk and record.details["agreement_sha256"] == approved.sha256


def test_a_partners_renewal_after_activation_changes_nothing_until_the_umbrella_authority_accepts_it(
        api, staff, demo, keycloak_clients):
    # Given an Active integration serving every field under its approved agreement
    partner = activate(staff, demo, keycloak_clients, name="renewal waits")
    make_person(demo["ke"], "14000003", [(demo["health"], ConsentStatus.GRANTED)])
    approved = partner.integration.agreements.get()
    integration = partner.refresh()
    assert integration.approved_agreement == approved
    until = integration.agreement_until
    url = _agreements_api(api, integration)
    api.force_authenticate(staff["partner-user"])

    # When the partner's user uploads a one-line text file covering only `sex`, expiring in 2099
    narrow = {**_api_terms(integration, fields=["sex"], expires_on=datetime.date(2099, 12, 31)),
              "document": _text_upload("We agree.\n", "sex-only.txt")}
    response = api.post(url, narrow, format="multipart")
    # Then it is refused, naming what it does not cover, and nothing moves
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    [error] = response.json()["errors"]
    assert error["field"] == "fields" and "must include every field the integration reads" in error["message"]
    assert "family_name" in error["message"] and "immunization.vaccine" in error["message"]
    assert integration.agreements.count() == 1

    # When it uploads a renewal covering everything, expiring in 2099
    full = {**_api_terms(integration, expires_on=datetime.date(2099, 12, 31)), "document": _text_upload()}
    response = api.post(url, full, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["state"] == "pending_acceptance"
    renewal = DataSharingAgreement.objects.get(pk=response.json()["id"])
    # Then the integration keeps running under the approved agreement and its end
    integration = partner.refresh()
    assert integration.approved_agreement == approved and integration.agreement_until == until
    api.force_authenticate(None)
    assert _get(api, partner.token, "/api/v1/persons/?vertical=health").status_code == 200
    api.credentials()
    record = AuditRecord.objects.filter(event_type=AuditEvent.AGREEMENT_UPLOADED).latest("id")
    assert record.details["pending_acceptance"] is True and record.details["agreement_until"] == until.isoformat()
    api.force_authenticate(staff["auditor"])
    states = {a["id"]: a["state"] for a in api.get(url).json()}
    assert states == {approved.pk: "in_force", renewal.pk: "pending_acceptance"}
    assert api.get(f"/api/v1/governance/integrations/{integration.pk}/").json()["approved_agreement"] == approved.pk

    # When the umbrella authority accepts it (the governance API's action)
    api.force_authenticate(staff["umbrella"])
    response = api.post(f"/api/v1/governance/integrations/{integration.pk}/accept-agreement/",
                        {"agreement": renewal.pk, "reason": "renewed for the programme"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["approved_agreement"] == renewal.pk
    # Then it is the one in force, its end the integration's, audited with both documents' hashes
    integration = partner.refresh()
    assert integration.approved_agreement == renewal
    assert integration.agreement_until == agreement_end(datetime.date(2099, 12, 31))
    accepted = AuditRecord.objects.get(event_type=AuditEvent.AGREEMENT_ACCEPTED)
    assert accepted.actor == "umbrella" and accepted.integration_id == integration.pk
    assert accepted.details["agreement_id"] == renewal.pk and accepted.details["sha256"] == renewal.sha256
    assert accepted.details["previous_agreement_id"] == approved.pk and accepted.details["previous_sha256"] == approved.sha256
    assert accepted.details["agreement_until_before"] == until.isoformat()
    assert accepted.details["reason"] == "renewed for the programme"
    assert integration.history.first().history_change_reason == f"agreement {renewal.pk} accepted"
    states = {a["id"]: a["state"] for a in api.get(url).json()}
    assert states == {approved.pk: "superseded", renewal.pk: "in_force"}
    api.force_authenticate(None)
    assert _get(api, partner.token, "/api/v1/persons/?vertical=health").status_code == 200


@pytest.fixture
def approved(staff, reviewed):
    """`reviewed`, signed off by the umbrella authority under a year's agreement."""
    sign_agreement(reviewed, staff["ke-admin"])
    return services.integration_approve(integration=reviewed, actor=staff["umbrella"])


@pytest.mark.parametrize("username,status", [
    ("ke-admin", 403), ("partner-user", 403), ("auditor", 403), ("root", 403), ("ke-health-owner", 403),
    ("ug-admin", 404), ("outsider", 404), ("umbrella", 200),
])
def test_only_the_umbrella_authority_may_accept_an_agreement(api, staff, approved, outsider, username, status):
    renewal = sign_agreement(approved, staff["partner-user"])
    api.force_authenticate(outsider if username == "outsider" else staff[username])
    response = api.post(f"/api/v1/governance/integrations/{approved.pk}/accept-agreement/", {"agreement": renewal.pk},
                        format="json")
    assert response.status_code == status, response.content
    approved.refresh_from_db()
    assert (approved.approved_agreement_id == renewal.pk) == (status == 200)
    assert AuditRecord.objects.filter(event_type=AuditEvent.AGREEMENT_ACCEPTED).exists() == (status == 200)
    if status != 200:
        assert response["Content-Type"] == "application/problem+json"


def test_acceptance_is_refused_for_what_it_cannot_accept(staff, demo, reviewed, approved):
    umbrella = staff["umbrella"]
    in_force = approved.approved_agreement
    # Before the sign-off there is nothing to accept: the latest upload is the one approved.
    other = services.integration_submit(integration=new_draft(staff, demo, name="not signed off"), actor=staff["ke-admin"])
    early = sign_agreement(other, staff["ke-admin"])
    with pytest.raises(InvalidTransitionError, match="only after the sign-off"):
        agreements.agreement_accept(integration=other, actor=umbrella, agreement=early)
    # Not one waiting: the one in force, another integration's, an unknown id, not a number.
    for agreement in (in_force, early, early.pk, 10**9, "1", True, None):
        with pytest.raises(ValidationFailedError) as refused:
            agreements.agreement_accept(integration=approved, actor=umbrella, agreement=agreement)
        assert refused.value.errors[0]["field"] == "agreement"
    # Expired since its upload, or not covering what the integration reads (recorded so before the rule).
    renewal = sign_agreement(approved, staff["partner-user"])
    DataSharingAgreement.objects.filter(pk=renewal.pk).update(expires_on=TODAY())
    with pytest.raises(ValidationFailedError, match="expired on"):
        agreements.agreement_accept(integration=approved, actor=umbrella, agreement=renewal)
    DataSharingAgreement.objects.filter(pk=renewal.pk).update(expires_on=TODAY() + datetime.timedelta(days=9),
                                                             fields=["sex"])
    with pytest.raises(ValidationFailedError, match="does not cover fields"):
        agreements.agreement_accept(integration=approved, actor=umbrella, agreement=renewal)
    approved.refresh_from_db()
    assert approved.approved_agreement == in_force and not AuditRecord.objects.filter(
        event_type=AuditEvent.AGREEMENT_ACCEPTED).exists()


def test_whoever_uploaded_an_agreement_cannot_accept_it(staff, demo, approved):
    # An umbrella authority who is also the tenant's admin uploads a renewal: someone else accepts it.
    both = staff["umbrella"]
    RoleAssignment.objects.create(user=both, role=Role.TENANT_ADMIN, tenant=demo["ke"])
    both.__dict__.pop("_scp_roles", None)
    renewal = sign_agreement(approved, both)
    with pytest.raises(PermissionDeniedError, match="uploaded"):
        agreements.agreement_accept(integration=approved, actor=both, agreement=renewal)


def test_activation_re_runs_the_agreement_gate_on_the_approved_agreement(api, staff, approved, keycloak_clients):
    keycloak_clients.append(approved.client_id_for_keycloak)
    in_force = approved.approved_agreement
    # The approved agreement lapses between the sign-off and the activation; a renewal is uploaded.
    DataSharingAgreement.objects.filter(pk=in_force.pk).update(expires_on=TODAY())
    renewal = sign_agreement(approved, staff["partner-user"])
    with pytest.raises(ValidationFailedError, match=f"cannot be activated .* expired on {TODAY().isoformat()}"):
        services.integration_activate(integration=Integration.objects.get(pk=approved.pk), actor=staff["ke-admin"])
    api.force_authenticate(staff["ke-admin"])
    response = api.post(f"/api/v1/governance/integrations/{approved.pk}/activate/", {}, format="json")
    assert response.status_code == 422 and "client_secret" not in response.json()
    assert Integration.objects.get(pk=approved.pk).status == S.APPROVED
    # Once the umbrella authority accepts the renewal, it is activated.
    agreements.agreement_accept(integration=approved, actor=staff["umbrella"], agreement=renewal)
    integration, _credentials = services.integration_activate(integration=Integration.objects.get(pk=approved.pk),
                                                              actor=staff["ke-admin"])
    assert integration.status == S.ACTIVE and integration.approved_agreement == renewal


def test_activation_is_refused_when_the_approved_agreement_no_longer_covers_a_field_read(staff, approved):
    DataSharingAgreement.objects.filter(pk=approved.approved_agreement_id).update(fields=["id"])
    with pytest.raises(ValidationFailedError, match="does not cover fields"):
        services.integration_activate(integration=Integration.objects.get(pk=approved.pk), actor=staff["ke-admin"])
    Integration.objects.filter(pk=approved.pk).update(approved_agreement=None)  # signed off before agreements
    with pytest.raises(ValidationFailedError, match="No data-sharing agreement was approved"):
        services.integration_activate(integration=Integration.objects.get(pk=approved.pk), actor=staff["ke-admin"])
    # Then every upload waits for acceptance.
    assert list(awaiting_acceptance(Integration.objects.all())) == [approved]
    assert list(pending_agreements(Integration.objects.get(pk=approved.pk))) == list(approved.agreements.all())


def test_an_upload_not_covering_every_field_read_is_refused_in_any_state(staff, demo, reviewed, approved):
    # Reviewed with the reviewer's narrowing: what it reads is what must be covered.
    narrowed = services.integration_submit(integration=new_draft(staff, demo, name="narrowed"), actor=staff["ke-admin"])
    narrowed = services.integration_review(integration=narrowed, actor=staff["ke-health-owner"], vertical=demo["health"],
                                           decision="approve", approved_fields=["id", "district"])
    with pytest.raises(ValidationFailedError) as refused:
        sign_agreement(narrowed, staff["partner-user"], fields=["id"])
    assert refused.value.errors == [{"field": "fields", "message": "must include every field the integration reads; "
                                                                   "missing: district"}]
    for integration in (narrowed, approved):
        before = _stored_files()
        with pytest.raises(ValidationFailedError, match="not valid"):
            sign_agreement(integration, staff["partner-user"], fields=["sex"])
        assert _stored_files() == before
    assert sign_agreement(narrowed, staff["partner-user"], fields=["district", "id"]).fields == ["district", "id"]


def test_the_sweep_names_the_agreement_in_force_not_a_pending_renewal(staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="sweep in force")
    in_force = partner.integration.agreements.get()
    renewal = sign_agreement(partner.refresh(), staff["partner-user"], document=pdf_upload(text="Renewal"),
                             expires_on=TODAY() + datetime.timedelta(days=90))
    DataSharingAgreement.objects.filter(pk=in_force.pk).update(expires_on=TODAY())
    Integration.objects.filter(pk=partner.integration.pk).update(agreement_until=timezone.now() - datetime.timedelta(seconds=1))
    assert agreements.sweep(timezone.now()) == {"suspended": [str(partner.integration.pk)]}
    reason = partner.refresh().history.first().history_change_reason
    assert in_force.sha256[:16] in reason and renewal.sha256[:16] not in reason


def test_the_pages_show_a_pending_renewal_and_only_the_umbrella_authority_gets_to_accept_it(client, staff, approved):
    change_url = f"/admin/registry/integration/{approved.pk}/change/"
    accept_url = f"/admin/registry/integration/{approved.pk}/action/accept-agreement/"
    in_force = approved.approved_agreement
    client.force_login(staff["partner-user"])
    response = client.post(f"/admin/registry/integration/{approved.pk}/agreement/",
                           {**_portal_form(approved), "document": _text_upload()}, follow=True)
    assert "pending acceptance by the umbrella authority" in response.content.decode()
    renewal = DataSharingAgreement.objects.latest("pk")
    assert Integration.objects.get(pk=approved.pk).approved_agreement == in_force
    page = client.get(change_url).content.decode()
    assert "Pending acceptance" in page and renewal.sha256 in page and accept_url not in page
    assert client.post(accept_url, {"agreement": renewal.pk}).status_code in (302, 403)
    assert Integration.objects.get(pk=approved.pk).approved_agreement == in_force

    client.force_login(staff["umbrella"])
    page = client.get(change_url).content.decode()
    assert "Pending acceptance" in page and accept_url in page and "In force: the agreement approved" in page
    form = client.get(accept_url).content.decode()
    assert renewal.sha256[:12] in form and f'value="{in_force.pk}"' not in form  # only what waits is offered
    # Waiting for the umbrella authority (its home and the API's waiting list), linking to the page.
    [waiting] = [w for w in waiting_for(staff["umbrella"]) if w.kind == "agreement_acceptances"]
    assert waiting.count == 1 and waiting.url == change_url
    assert not [w for w in waiting_for(staff["ke-admin"]) if w.kind == "agreement_acceptances"]
    response = client.post(accept_url, {"agreement": renewal.pk, "reason": "renewal checked"}, follow=True)
    assert response.status_code == 200 and "Accept agreement: the integration is now Approved" in response.content.decode()
    assert Integration.objects.get(pk=approved.pk).approved_agreement == renewal
    page = client.get(change_url).content.decode()
    assert "Pending acceptance" not in page and accept_url not in page
    assert not [w for w in waiting_for(staff["umbrella"]) if w.kind == "agreement_acceptances"]


# --- bounds: lists counted before they are walked, and uploads per day --------------------------


def test_a_huge_list_of_signatories_is_refused_by_its_count_at_once(api, client, staff, reviewed):
    huge = [f"Signatory {i} (Organization)" for i in range(60_000)]
    started = time.perf_counter()
    with pytest.raises(ValidationFailedError) as refused:
        sign_agreement(reviewed, staff["ke-admin"], signatories=huge, fields=huge)
    assert time.perf_counter() - started < 2  # was 18 s: a list walked for every entry
    assert {(e["field"], e["message"]) for e in refused.value.errors} >= {
        ("signatories", f"at most {agreements.MAX_SIGNATORIES} entries"), ("fields", f"at most {agreements.MAX_FIELDS} entries")}

    api.force_authenticate(staff["ke-admin"])
    started = time.perf_counter()
    response = api.post(_agreements_api(api, reviewed), {**_api_terms(reviewed), "signatories": json.dumps(huge),
                                                         "document": pdf_upload()}, format="multipart")
    assert time.perf_counter() - started < 2
    assert response.status_code == 422 and response.json()["errors"] == [
        {"field": "signatories", "message": f"at most {agreements.MAX_SIGNATORIES} entries"}]

    client.force_login(staff["ke-admin"])
    response = client.post(f"/admin/registry/integration/{reviewed.pk}/agreement/",
                           {**_portal_form(reviewed), "signatories": "\n".join(huge[:3000]), "document": pdf_upload()})
    assert response.status_code == 422 and b"Ensure this value has at most" in response.content
    response = client.post(f"/admin/registry/integration/{reviewed.pk}/agreement/",
                           {**_portal_form(reviewed), "signatories": "\n".join(["A (B)"] * 51), "document": pdf_upload()})
    assert response.status_code == 422 and b"At most 50 signatories" in response.content
    assert not DataSharingAgreement.objects.exists()


def test_duplicates_are_dropped_keeping_the_first_order(staff, reviewed):
    agreement = sign_agreement(reviewed, staff["ke-admin"], signatories=["B (Org)", " A (Org) ", "B (Org)", "A (Org)"],
                               purposes=[reviewed.purpose_code, "research", reviewed.purpose_code])
    assert agreement.signatories == ["B (Org)", "A (Org)"]
    assert agreement.purposes == [reviewed.purpose_code, "research"]


def test_at_most_five_uploads_per_integration_a_day_then_429_with_retry_after(api, client, staff, demo, reviewed, settings):
    assert settings.SCP_AGREEMENT_MAX_PER_DAY == 5
    for _ in range(5):
        sign_agreement(reviewed, staff["partner-user"])
    files = _stored_files()
    api.force_authenticate(staff["ke-admin"])
    response = api.post(_agreements_api(api, reviewed), {**_api_terms(reviewed), "document": pdf_upload()},
                        format="multipart")
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert 86_000 < int(response["Retry-After"]) <= 86_401
    client.force_login(staff["ke-admin"])
    response = client.post(f"/admin/registry/integration/{reviewed.pk}/agreement/",
                           {**_portal_form(reviewed), "document": pdf_upload()})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0 and b"24 hours" in response.content
    assert DataSharingAgreement.objects.count() == 5 and _stored_files() == files  # nothing kept
    assert AuditRecord.objects.filter(event_type=AuditEvent.AGREEMENT_UPLOADED).count() == 5
    # Another integration has its own allowance; a day later a slot frees.
    assert sign_agreement(new_draft(staff, demo, name="other"), staff["ke-admin"]).pk
    oldest = DataSharingAgreement.objects.filter(integration=reviewed).earliest("uploaded_at")
    DataSharingAgreement.objects.filter(pk=oldest.pk).update(uploaded_at=timezone.now() - datetime.timedelta(hours=25))
    assert sign_agreement(reviewed, staff["ke-admin"]).pk


def test_the_compliance_view_lists_an_agreement_about_to_end(staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="ending agreement")
    Integration.objects.filter(pk=partner.integration.pk).update(agreement_until=timezone.now() + datetime.timedelta(days=3))
    items = compliance(tenant_ids=None)
    assert any(i.pk == partner.integration.pk and "agreement ends within 14 days" in reason for i, reason, _ in items)
