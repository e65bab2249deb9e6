"""A valid data-sharing agreement for tests that walk an integration past its sign-off (issue #14:
no approval without one): a tiny PDF built in memory, uploaded through the service."""
import datetime

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from lifecycle.agreements import agreement_upload


def tiny_pdf(text="Data-sharing agreement"):
    """A one-page PDF saying `text`, with a correct cross-reference table."""
    body = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 400 144]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length %d>>stream\n" % len(body) + body + b"\nendstream",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_upload(name="agreement.pdf", text="Data-sharing agreement", content_type="application/pdf"):
    return SimpleUploadedFile(name, tiny_pdf(text), content_type=content_type)


def agreement_terms(integration, **overrides):
    """Terms that let `integration` be approved: its purpose, every field its contract allows in
    its verticals, in effect today for a year."""
    contract = integration.data_contract
    today = timezone.localdate()
    return {
        "signatories": ["Wanjiru Kamau (Ministry of Health, Kenya)", "Sam Okello (ACME Health)"],
        "purposes": [integration.purpose_code],
        "fields": sorted({f for v in integration.vertical_codes() for f in contract.approvable_fields(v)}),
        "retention_days": 365,
        "effective_from": today,
        "expires_on": today + datetime.timedelta(days=365),
        **overrides,
    }


def sign_agreement(integration, actor, *, document=None, **overrides):
    """Upload a valid agreement of `integration` as `actor` (its tenant admin or partner user)."""
    return agreement_upload(integration=integration, actor=actor, document=document or pdf_upload(),
                            **agreement_terms(integration, **overrides))
