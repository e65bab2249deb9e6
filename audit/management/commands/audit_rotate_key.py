"""`python manage.py audit_rotate_key --new-key-file PATH`: rotate the checkpoint-signing key.

Seals every chain with the current key, makes a new Ed25519 key (written to PATH, readable by
its owner only), retires the current key and registers the new one, and audits the rotation.
Then restart the portal and workers with `SCP_AUDIT_SIGNING_KEY_FILE=PATH` and the old public
key added to `SCP_AUDIT_PUBLISHED_KEYS`, and publish the new public key beside the old: exports
spanning the rotation verify with both. Until the restart,
sealing refuses to sign with the retired key (records wait, unsealed, and are sealed after it).
"""
import base64
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from audit.chain import PLATFORM_CHAIN, lock_chain, seal_all
from audit.models import AuditSeal, AuditSigningKey
from audit.services import AuditEvent, audit_record
from audit.signing import key_id_of, public_key_of, signing_key


class Command(BaseCommand):
    help = "Rotate the audit checkpoint-signing key (audited); prints the new public key to publish."

    def add_arguments(self, parser):
        parser.add_argument("--new-key-file", required=True, help="where to write the new private key (must not exist)")

    def handle(self, *args, new_key_file, **options):
        if os.path.exists(new_key_file):
            raise CommandError(f"{new_key_file} exists: refusing to overwrite a key")
        seal_all()  # everything written so far is covered by the current key
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        private_b64 = base64.b64encode(raw).decode()
        public_b64 = public_key_of(private_b64)
        descriptor = os.open(new_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(private_b64 + "\n")
        with transaction.atomic():
            # Every chain's sealing lock is held while the old key retires, so no sealer can be
            # between reading the key and signing with it (it would sign after the retirement).
            for chain in sorted(set(AuditSeal.objects.values_list("chain", flat=True)) | {PLATFORM_CHAIN}):
                lock_chain(chain)
            now = timezone.now()
            old = signing_key()
            AuditSigningKey.objects.filter(pk=old.pk).update(retired_at=now)
            new = AuditSigningKey.objects.create(key_id=key_id_of(public_b64), public_key=public_b64, first_used_at=now)
            audit_record(event_type=AuditEvent.AUDIT_KEY_ROTATED, actor="audit_rotate_key",
                         details={"retired_key_id": old.key_id, "new_key_id": new.key_id, "new_public_key": public_b64,
                                  "at": now.isoformat()})
        self.stdout.write(self.style.SUCCESS(
            f"retired key {old.key_id}; new key {new.key_id} written to {new_key_file}.\n"
            f"Publish the new public key: {public_b64}\n"
            f"Restart the portal and workers with SCP_AUDIT_SIGNING_KEY_FILE={new_key_file} and "
            f"SCP_AUDIT_PUBLISHED_KEYS including {old.public_key}."))
