"""Data-sharing agreements (issue #14 item 4): the signed document an integration is approved
under, uploaded by the tenant's admin or the partner's users, stored outside the web root and
pinned by its SHA-256, with its signatories, purposes, fields, retention and validity.

- `agreement_upload` validates the document (size, then type by its first bytes, never by the
  client's word) and what it covers (the integration's purpose and every field it reads, in any
  state), streams it to the storage while hashing it, and records the row (append-only: a
  renewal is a new row) and its audit in one transaction. At most
  `SCP_AGREEMENT_MAX_PER_DAY` uploads per integration in 24 hours (429), since every one is kept.
  Before the sign-off the upload sets the integration's `agreement_until`, which the exchange
  checks with `active_until` on every request; after it, the upload waits for acceptance.
- `agreement_accept` is the umbrella authority's acceptance of an upload after the sign-off:
  only then does it replace the approved agreement and move `agreement_until`.
- `agreement_document` opens the stored file for someone who may see the integration, checked
  against its pinned SHA-256, and audits the download.
- `sweep` (the governance beat) suspends serving integrations whose agreement in force expired,
  with the reason recorded.

The gates of the sign-off and the activation live in `lifecycle.agreement_gate`.
"""
import codecs
import datetime
import hashlib
import logging
import os
import re
import uuid
import zipfile

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.utils import timezone

from audit.models import AuditResult
from audit.services import AuditEvent, audit_record
from registry.models import DataSharingAgreement, Integration, IntegrationStatus
from scp_core.errors import ApiError, InvalidTransitionError, PermissionDeniedError, ValidationFailedError
from scp_core.models import Purpose

from . import services
from .agreement_gate import (
    ACCEPTING, BEFORE_SIGN_OFF, agreement_end, agreement_gaps, agreement_in_force, fields_read, pending_agreements,
)
from .permissions import require
from .roles import roles_of

logger = logging.getLogger(__name__)
S = IntegrationStatus

PDF = "application/pdf"
TEXT = "text/plain"
ODT = "application/vnd.oasis.opendocument.text"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# What an agreement may be, by what its bytes say, and the extension it is stored under.
DOCUMENT_TYPES = {PDF: ".pdf", TEXT: ".txt", ODT: ".odt", DOCX: ".docx"}
# An agreement is added to a request or a running integration, never to a closed one.
CLOSED_STATES = frozenset({S.ARCHIVED, S.REJECTED})
_SNIFF_BYTES = 4096
# Bounds of the terms, checked before anything walks a list (the API and the form bound them too).
MAX_SIGNATORIES = 50
MAX_PURPOSES = 100
MAX_FIELDS = 500
MAX_TEXT = 300
_MAX_RETENTION_DAYS = 36500
_DAY = datetime.timedelta(days=1)


def agreement_upload(*, integration, actor, document, signatories, purposes, fields, retention_days,
                     effective_from, expires_on, request_id=""):
    """Record a data-sharing agreement of `integration` from the uploaded `document`.

    Refuses with 413 (too large), 415 (not a PDF, plain text, ODT or DOCX by its content), 422
    naming each field at fault (terms not covering the integration's purpose and every field it
    reads among them) or 429 (the day's uploads of this integration are used up); nothing is
    stored then. Before the sign-off the upload is the integration's agreement at once; after it,
    it waits for the umbrella authority's acceptance (`agreement_accept`). Returns the new
    agreement."""
    require(actor, "upload-agreement", integration)
    if integration.status in CLOSED_STATES:
        raise InvalidTransitionError(f"An agreement cannot be added to a {integration.get_status_display()} integration.")
    check_upload_allowance(integration)
    content_type = _checked_document(document)
    values, errors = _checked_terms(integration, signatories=signatories, purposes=purposes, fields=fields,
                                    retention_days=retention_days, effective_from=effective_from, expires_on=expires_on)
    if errors:
        raise ValidationFailedError("The agreement is not valid.", errors=errors)
    stored, sha256, size = _store(document, content_type)
    try:
        with transaction.atomic():
            locked = Integration.objects.select_for_update().get(pk=integration.pk)
            if locked.status in CLOSED_STATES:  # closed meanwhile
                raise InvalidTransitionError(f"An agreement cannot be added to a {locked.get_status_display()} integration.")
            check_upload_allowance(locked)  # again under the row's lock: concurrent uploads count
            agreement = DataSharingAgreement.objects.create(
                integration=locked, document=stored, filename=_display_name(document.name, content_type),
                content_type=content_type, size=size, sha256=sha256, uploaded_by=actor, **values,
            )
            pending = locked.status not in BEFORE_SIGN_OFF
            until = locked.agreement_until
            if not pending:
                # Before the sign-off the latest upload is the one to approve: its end is the
                # integration's, read with the row by the exchange (no history row: the
                # agreement and its audit record it). After the sign-off the approved one
                # stays in force, and its end with it, until the umbrella authority accepts.
                until = agreement_end(agreement.expires_on)
                Integration.objects.filter(pk=locked.pk).update(agreement_until=until)
            audit_record(
                event_type=AuditEvent.AGREEMENT_UPLOADED,
                tenant=locked.tenant,
                integration=locked,
                actor_user=actor,
                request_id=request_id,
                verticals=locked.vertical_codes(),
                details={"agreement_id": agreement.pk, "filename": agreement.filename, "sha256": sha256, "size": size,
                         "content_type": content_type, "signatories": agreement.signatories,
                         "purposes": agreement.purposes, "fields": agreement.fields,
                         "retention_days": agreement.retention_days,
                         "effective_from": agreement.effective_from.isoformat(),
                         "expires_on": agreement.expires_on.isoformat(),
                         "pending_acceptance": pending,
                         "agreement_until_before": locked.agreement_until.isoformat() if locked.agreement_until else None,
                         "agreement_until": until.isoformat() if until else None},
            )
    except BaseException:
        _storage().delete(stored)  # nothing half-kept
        raise
    integration.agreement_until = until
    return agreement


def agreement_accept(*, integration, actor, agreement, reason="", request_id=""):
    """The umbrella authority accepts `agreement` (an instance or an id), uploaded after the
    sign-off, as the integration's agreement: it replaces the approved one, and its end becomes
    the integration's `agreement_until`. Until then the integration runs under the approved
    agreement. Refused unless the agreement is one of the integration's uploads after the one in
    force, uploaded by someone else, current and covering the purpose and every field the
    integration reads (422), and the integration is signed off and not closed (409).
    Returns the integration."""
    require(actor, "accept-agreement", integration)
    _check_accepting(integration)
    agreement_id = getattr(agreement, "pk", agreement)
    numeric = isinstance(agreement_id, int) and not isinstance(agreement_id, bool)
    candidate = pending_agreements(integration).filter(pk=agreement_id).first() if numeric else None
    if candidate is None:
        raise ValidationFailedError(
            "Only an agreement of this integration uploaded after the one in force can be accepted.",
            errors=[{"field": "agreement", "message": f"{agreement_id}: not an agreement awaiting acceptance"}])
    if candidate.uploaded_by_id == actor.pk:
        raise PermissionDeniedError("Whoever uploaded an agreement cannot accept it.")
    gaps = agreement_gaps(integration, candidate)
    if gaps:
        raise ValidationFailedError("This agreement cannot be accepted: " + " ".join(gaps),
                                    errors=[{"field": "agreement", "message": gap} for gap in gaps])
    with transaction.atomic():
        locked = Integration.objects.select_for_update().get(pk=integration.pk)
        _check_accepting(locked)
        if not pending_agreements(locked).filter(pk=candidate.pk).exists():  # another was accepted meanwhile
            raise InvalidTransitionError("A later agreement was accepted meanwhile; this one no longer awaits acceptance.")
        previous, before = locked.approved_agreement, locked.agreement_until
        locked.approved_agreement = candidate
        locked.agreement_until = agreement_end(candidate.expires_on)
        locked._change_reason = f"agreement {candidate.pk} accepted"  # the history's reason holds 100 characters
        locked._history_user = actor
        locked.save()
        audit_record(
            event_type=AuditEvent.AGREEMENT_ACCEPTED,
            tenant=locked.tenant,
            integration=locked,
            actor_user=actor,
            request_id=request_id,
            verticals=locked.vertical_codes(),
            details={"agreement_id": candidate.pk, "sha256": candidate.sha256, "filename": candidate.filename,
                     "purposes": candidate.purposes, "fields": candidate.fields,
                     "effective_from": candidate.effective_from.isoformat(), "expires_on": candidate.expires_on.isoformat(),
                     "previous_agreement_id": previous.pk if previous else None,
                     "previous_sha256": previous.sha256 if previous else None,
                     "agreement_until_before": before.isoformat() if before else None,
                     "agreement_until": locked.agreement_until.isoformat(), "reason": reason},
        )
    return locked


def has_pending_agreement(integration):
    """Whether an upload after the sign-off waits for the umbrella authority's acceptance."""
    return integration.status in ACCEPTING and pending_agreements(integration).exists()


def agreement_document(*, agreement, actor, request_id="", via="portal"):
    """The stored document of `agreement`, opened for reading, for someone who may see its
    integration (otherwise 404, as for any object outside one's scope). Its bytes are checked
    against the pinned SHA-256 first: a document changed on disk is not served (500, audited
    as a failure). The download is audited."""
    if not Integration.objects.visible_to(roles_of(actor)).filter(pk=agreement.integration_id).exists():
        raise ApiError(404, "not_found", "No such agreement.")
    integration = agreement.integration
    storage = _storage()
    digest = hashlib.sha256()
    try:
        with storage.open(agreement.document.name, "rb") as stored:
            for chunk in iter(lambda: stored.read(64 * 1024), b""):
                digest.update(chunk)
        handle = storage.open(agreement.document.name, "rb")
    except FileNotFoundError:
        digest = None
    intact = digest is not None and digest.hexdigest() == agreement.sha256
    audit_record(
        event_type=AuditEvent.AGREEMENT_DOWNLOADED,
        result=AuditResult.SUCCESS if intact else AuditResult.FAILURE,
        tenant=integration.tenant,
        integration=integration,
        actor_user=actor,
        request_id=request_id,
        verticals=integration.vertical_codes(),
        details={"agreement_id": agreement.pk, "filename": agreement.filename, "sha256": agreement.sha256, "via": via,
                 **({} if intact else {"error": "missing" if digest is None else "sha256 mismatch"})},
    )
    if not intact:
        if digest is not None:
            handle.close()
        logger.error("Agreement %s of %s does not match its pinned SHA-256 (or is missing): not served",
                     agreement.pk, integration.pk)
        raise ApiError(500, "server_error", "The stored agreement no longer matches its pinned SHA-256; it is not served.")
    return handle


def sweep(now):
    """Suspend every serving integration whose agreement in force has expired, with the reason."""
    suspended = []
    lapsed = Integration.objects.serving().filter(agreement_until__lte=now).values_list("pk", flat=True)
    for pk in lapsed:
        integration = Integration.objects.get(pk=pk)
        agreement = agreement_in_force(integration)
        # Short enough for the history's reason (100 characters); the hash names the document.
        reason = (f"data-sharing agreement expired on {agreement.expires_on.isoformat()} (sha256 {agreement.sha256[:16]})"
                  if agreement is not None else f"data-sharing agreement ended {integration.agreement_until:%Y-%m-%d}")
        try:
            services.integration_suspend(integration=integration, actor=None, reason=reason)
        except InvalidTransitionError:
            continue  # changed state meanwhile (suspended or archived by someone): nothing to do
        suspended.append(str(pk))
    return {"suspended": suspended}


def _check_accepting(integration):
    if integration.status not in ACCEPTING:
        raise InvalidTransitionError(
            f"An agreement is accepted only after the sign-off, of an integration not closed; this one is "
            f"{integration.get_status_display()} (before the sign-off, the latest upload is the one approved).")


def check_upload_allowance(integration):
    """Every upload is kept (append-only, up to SCP_AGREEMENT_MAX_BYTES each): at most
    SCP_AGREEMENT_MAX_PER_DAY per integration in any 24 hours, else 429 with Retry-After."""
    limit = settings.SCP_AGREEMENT_MAX_PER_DAY
    since = timezone.now() - _DAY
    recent = list(DataSharingAgreement.objects.filter(integration_id=integration.pk, uploaded_at__gt=since)
                  .order_by("-uploaded_at").values_list("uploaded_at", flat=True)[:limit])
    if len(recent) >= limit:
        # A slot frees when the oldest of the last `limit` uploads is a day old.
        wait = max(1, int((recent[-1] + _DAY - timezone.now()).total_seconds()) + 1)
        raise ApiError(429, "rate_limited",
                       f"At most {limit} agreements may be uploaded per integration in 24 hours; retry in {wait} seconds.",
                       headers={"Retry-After": str(wait)})


# --- the document --------------------------------------------------------------------------


def _storage():
    return DataSharingAgreement._meta.get_field("document").storage


def _checked_document(document):
    """The document's type by its first bytes (413, 415 or 422 when it cannot be one)."""
    if document is None or not getattr(document, "name", ""):
        raise ValidationFailedError("The agreement document is missing.",
                                    errors=[{"field": "document", "message": "required"}])
    limit = settings.SCP_AGREEMENT_MAX_BYTES
    if document.size is not None and document.size > limit:  # a size unknown is bounded while stored
        raise ApiError(413, "payload_too_large", f"An agreement document may be at most {limit} bytes.")
    if document.size == 0:
        raise ValidationFailedError("The agreement document is empty.",
                                    errors=[{"field": "document", "message": "the file is empty"}])
    content_type = _sniff(document)
    if content_type is None:
        raise ApiError(415, "unsupported_media_type",
                       "An agreement must be a PDF, plain text (UTF-8), ODT or DOCX document; its content is none of these.",
                       errors=[{"field": "document", "message": "not a PDF, plain text, ODT or DOCX document"}])
    return content_type


def _sniff(document):
    document.seek(0)
    head = document.read(_SNIFF_BYTES)
    document.seek(0)
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return _office_type(document)
    return TEXT if _is_plain_text(head) else None


def _office_type(document):
    """ODT (its first entry is `mimetype`, holding the type) or DOCX (a Word package), or None."""
    try:
        with zipfile.ZipFile(document) as package:
            names = package.namelist()
            if names and names[0] == "mimetype":
                with package.open("mimetype") as entry:
                    if entry.read(len(ODT) + 1) == ODT.encode():
                        return ODT
            if "[Content_Types].xml" in names and "word/document.xml" in names:
                return DOCX
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        pass
    finally:
        document.seek(0)
    return None


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_MARKUP = (b"<!doctype", b"<html", b"<svg", b"<?xml", b"<script")


def _is_plain_text(head):
    """UTF-8 (a character cut at the end of the sample is fine), no control characters, no markup."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not _CONTROL.search(head) and not head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_MARKUP)


class _HashingReader(File):
    """The upload as the storage reads it, hashed and counted on the way (one pass over the
    bytes), and cut off past the limit whatever the client declared its size to be."""

    def __init__(self, upload, limit):
        super().__init__(upload, name=upload.name)
        self.digest, self.count, self.limit = hashlib.sha256(), 0, limit

    def chunks(self, chunk_size=None):
        self.file.seek(0)
        for chunk in self.file.chunks(chunk_size) if hasattr(self.file, "chunks") else iter(lambda: self.file.read(64 * 1024), b""):
            self.count += len(chunk)
            if self.count > self.limit:
                raise ApiError(413, "payload_too_large", f"An agreement document may be at most {self.limit} bytes.")
            self.digest.update(chunk)
            yield chunk


def _store(document, content_type):
    """Stream the document into the agreements storage under a name of ours; (name, sha256, size)."""
    storage = _storage()
    name = f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}{DOCUMENT_TYPES[content_type]}"
    reader = _HashingReader(document, settings.SCP_AGREEMENT_MAX_BYTES)
    try:
        stored = storage.save(name, reader)
    except BaseException:
        if storage.exists(name):
            storage.delete(name)
        raise
    return stored, reader.digest.hexdigest(), reader.count


def _display_name(client_name, content_type):
    """The client's file name, kept only for display and the download's name: no path, no
    control characters, bounded, with the extension of what it really is."""
    base = os.path.basename((client_name or "").replace("\\", "/"))
    base = re.sub(r"[\x00-\x1f\x7f\"]", "", base).strip() or "agreement"
    stem, _ext = os.path.splitext(base)
    extension = DOCUMENT_TYPES[content_type]
    return f"{(stem or 'agreement')[:200 - len(extension)]}{extension}"


# --- what it covers --------------------------------------------------------------------------


def _checked_terms(integration, *, signatories, purposes, fields, retention_days, effective_from, expires_on):
    """The agreement's terms, cleaned, and the errors found (each naming its field)."""
    errors, values = [], {}

    def error(field, message):
        errors.append({"field": field, "message": message})

    names = _strings(signatories, "signatories", error, MAX_SIGNATORIES)
    if names is not None:
        if not names:
            error("signatories", "at least one signatory is required")
        values["signatories"] = names

    codes = _strings(purposes, "purposes", error, MAX_PURPOSES)
    if codes is not None:
        vocabulary = set(Purpose.objects.filter(tenant_id=integration.tenant_id).values_list("code", flat=True))
        for code in codes:
            if code not in vocabulary:
                error("purposes", f"{code}: not one of the tenant's purposes ({', '.join(sorted(vocabulary)) or 'none'})")
        if integration.purpose_code not in codes:
            error("purposes", f"must include the integration's purpose '{integration.purpose_code}'")
        values["purposes"] = codes

    names = _strings(fields, "fields", error, MAX_FIELDS)
    if names is not None:
        contract = integration.data_contract
        allowed = {f for vertical in integration.vertical_codes() for f in contract.approvable_fields(vertical)}
        if not names:
            error("fields", "at least one field is required")
        for name in names:
            if name not in allowed:
                error("fields", f"{name}: not a field of {contract.ref} in its verticals")
        # An agreement that does not cover what the integration reads could never be in force.
        uncovered = sorted(fields_read(integration) - set(names))
        if uncovered:
            error("fields", f"must include every field the integration reads; missing: {', '.join(uncovered)}")
        values["fields"] = names

    days = _whole_number(retention_days)
    if days is None:
        error("retention_days", "a whole number of days is required")
    elif not 1 <= days <= _MAX_RETENTION_DAYS:
        error("retention_days", f"must be between 1 and {_MAX_RETENTION_DAYS} days")
    values["retention_days"] = days

    start, end = _date(effective_from, "effective_from", error), _date(expires_on, "expires_on", error)
    if start is not None and end is not None and end <= start:
        error("expires_on", "must be after effective_from")
    if end is not None and end <= timezone.localdate():
        error("expires_on", "must be in the future")
    values.update(effective_from=start, expires_on=end)
    return values, errors


def _strings(value, field, error, limit):
    """A list of at most `limit` distinct, non-blank strings in their order, or None (with an
    error). The count is checked before any entry is looked at; duplicates are dropped through
    a set, so the work grows with the list's length, not its square."""
    if not isinstance(value, (list, tuple)):
        error(field, "a list is required")
        return None
    if len(value) > limit:
        error(field, f"at most {limit} entries")
        return None
    out, seen = [], set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            error(field, "every entry must be non-blank text")
            return None
        item = item.strip()
        if len(item) > MAX_TEXT:
            error(field, f"an entry may be at most {MAX_TEXT} characters")
            return None
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _whole_number(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
        return int(value)
    return None


def _date(value, field, error):
    if isinstance(value, datetime.datetime):
        value = value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value).strip())
    except (TypeError, ValueError):
        error(field, "a date (YYYY-MM-DD) is required")
        return None
