#!/usr/bin/env python3
"""Verify an SCP Integration Layer audit export, offline, without trusting the operator.

    python scp_audit_verify.py EXPORT_DIR [--public-key BASE64 ...]

EXPORT_DIR holds `records.jsonl` and `manifest.json` as written by `manage.py audit_export`.
Needs only the Python standard library and `cryptography` (for Ed25519). Exit status 0 when the
export verifies; 1 when it does not, naming the first bad record; 2 on unusable input.

What is checked: every record's hash is SHA-256 over the previous hash and the record's
canonical JSON; sequence numbers follow each other; the first record links to a signed
checkpoint (or to the genesis hash); every checkpoint and the export's closing signature are
valid Ed25519 signatures, over hashes the chain reproduces, each by the published key it names
(after a key rotation, give every key in use over the export's period) and made within that
key's period. A record that released persons' data commits to its disclosures (the
disclosure ledger): its details carry `disclosures.digest`, and the export line carries the
disclosures themselves, which must reproduce that digest.
"""
import argparse
import base64
import datetime
import hashlib
import json
import sys
from pathlib import Path

GENESIS = "0" * 64
FORMAT = "scp-audit-export/1"


def canonical_bytes(document):
    """The one serialization that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def link_hash(prev_hash, document):
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical_bytes(document)).hexdigest()


DISCLOSURE_KEYS = ("channel", "contract_version", "fields", "integration", "partner", "person_ids",
                   "purpose_code", "vertical")


def disclosure_document(disclosure):
    """The canonical content of one disclosure that its audit record commits to."""
    document = {key: disclosure[key] for key in DISCLOSURE_KEYS}
    document["person_ids"] = sorted(str(p) for p in disclosure["person_ids"])
    document["integration"] = str(disclosure["integration"])
    return document


def _disclosure_line(disclosure):
    """One disclosure as hashed: the canonical JSON of everything but the persons, "|", then the
    person ids sorted and joined by commas (ids hold no "|", so the last one splits it)."""
    head = {key: disclosure[key] for key in DISCLOSURE_KEYS if key != "person_ids"}
    head["integration"] = str(head["integration"])
    persons = ",".join(sorted(str(p) for p in disclosure["person_ids"]))
    return canonical_bytes(head) + b"|" + persons.encode("utf-8")


def disclosures_digest(disclosures):
    """SHA-256 over the record's disclosures, one line each, the lines sorted (independent of
    row order)."""
    return hashlib.sha256(b"\n".join(sorted(_disclosure_line(d) for d in disclosures))).hexdigest()


def disclosure_mismatch(record, disclosures):
    """Why `disclosures` are not the ones `record` (its canonical document) commits to, or None."""
    committed = (record.get("details") or {}).get("disclosures")
    if not disclosures and not committed:
        return None
    if not committed:
        return "has disclosures its record does not commit to (added)"
    if disclosures_digest(disclosures or []) != committed.get("digest"):
        return "its disclosures differ from those its record commits to (added, removed or changed)"
    return None


def checkpoint_message(chain, seq, hash_, signed_at):
    return f"scp-audit-checkpoint|{chain}|{seq}|{hash_}|{signed_at}".encode("utf-8")


def signature_valid(public_key_b64, message, signature_b64):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Failure(Exception):
    """The first bad record (or manifest fact), with a sentence that names it."""


def _describe(line_no, entry):
    if not isinstance(entry, dict):
        return f"line {line_no}"
    record = entry.get("record")
    rid = record.get("id") if isinstance(record, dict) else entry.get("record_id", "?")
    return f"record {rid} (line {line_no}, seq {entry.get('seq', '?')})"


def key_id_of(public_key_b64):
    return hashlib.sha256(public_key_b64.encode()).hexdigest()[:16]


def _moment(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def verify_export(directory, public_key=None):
    """Return a summary dict; raise Failure naming the first bad record. `public_key`: the
    operator's published key, or a list of them (one per key period after rotations); by
    default the keys the manifest names (which proves only that the export is consistent)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        raw = (directory / "records.jsonl").read_bytes()
    except (OSError, ValueError) as exc:
        raise Failure(f"unreadable export: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise Failure(f"unknown export format {manifest.get('format')!r}")
    given = [public_key] if isinstance(public_key, str) else list(public_key or [])
    named = manifest.get("keys") or [{"key_id": manifest["key_id"], "public_key": manifest["public_key"]}]
    keyring = {key_id_of(k): k for k in given} if given else {k["key_id"]: k["public_key"] for k in named}
    periods = {k["key_id"]: (k.get("from"), k.get("until")) for k in named}
    chain = manifest["chain"]
    checkpoints = {c["seq"]: c for c in manifest["checkpoints"]}
    for c in manifest["checkpoints"]:
        kid = c.get("key_id", manifest["key_id"])
        if kid not in keyring:
            raise Failure(f"checkpoint at seq {c['seq']} is signed by key {kid}, which is not among the published keys")
        if not signature_valid(keyring[kid], checkpoint_message(chain, c["seq"], c["hash"], c["signed_at"]), c["signature"]):
            raise Failure(f"checkpoint at seq {c['seq']} has an invalid signature")
        start, end = periods.get(kid, (None, None))
        signed_at = _moment(c["signed_at"])
        if (start and signed_at < _moment(start)) or (end and signed_at > _moment(end)):
            raise Failure(f"checkpoint at seq {c['seq']} was signed outside the period of key {kid}")

    first_seq = manifest["first_seq"]
    if first_seq == 1:
        prev = GENESIS
    elif first_seq - 1 in checkpoints:
        prev = checkpoints[first_seq - 1]["hash"]
    else:
        raise Failure(f"no signed checkpoint anchors the export's start (seq {first_seq - 1})")

    count, expected_seq, last_hash = 0, first_seq, None
    for line_no, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise Failure(f"line {line_no} is not JSON") from exc
        where = _describe(line_no, entry)
        if entry.get("seq") != expected_seq:
            raise Failure(f"{where}: expected seq {expected_seq} (a record was inserted, removed or reordered)")
        if entry.get("prev_hash") != prev:
            raise Failure(f"{where}: does not link to the record before it (removed, inserted or reordered)")
        if entry.get("record") is None:
            raise Failure(f"{where}: the record was deleted")
        if isinstance(entry["record"], dict) and entry["record"].get("id") != entry.get("record_id"):
            raise Failure(f"{where}: sealed as record {entry.get('record_id')} but holds another (swapped)")
        if link_hash(prev, entry["record"]) != entry.get("hash"):
            raise Failure(f"{where}: content does not match its hash (the record was altered)")
        if expected_seq in checkpoints and checkpoints[expected_seq]["hash"] != entry["hash"]:
            raise Failure(f"{where}: differs from the signed checkpoint at seq {expected_seq}")
        mismatch = disclosure_mismatch(entry["record"], entry.get("disclosures"))
        if mismatch:
            raise Failure(f"{where}: {mismatch}")
        prev = last_hash = entry["hash"]
        expected_seq += 1
        count += 1

    if count != manifest["count"]:
        raise Failure(f"the export holds {count} records, the manifest says {manifest['count']} (records removed or added at the end)")
    if count and last_hash != manifest["last_hash"]:
        raise Failure("the last record's hash differs from the manifest's")
    closing = manifest["closing_signature"]
    message = checkpoint_message(chain, manifest["last_seq"], manifest["last_hash"], closing["signed_at"])
    closing_key = keyring.get(manifest["key_id"])
    if closing_key is None:
        raise Failure(f"the export is closed by key {manifest['key_id']}, which is not among the published keys")
    if not signature_valid(closing_key, message, closing["signature"]):
        raise Failure("the export's closing signature is invalid (records changed at the end?)")
    return {"chain": chain, "records": count, "first_seq": first_seq, "last_hash": last_hash}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--public-key", action="append",
                        help="a published Ed25519 key of the operator (base64); give each key in use over the "
                             "export's period (after a rotation, the old and the new); default: the manifest's")
    args = parser.parse_args(argv)
    if not Path(args.export_dir, "manifest.json").exists():
        print(f"error: {args.export_dir} holds no manifest.json", file=sys.stderr)
        return 2
    try:
        summary = verify_export(args.export_dir, args.public_key)
    except Failure as failure:
        print(f"FAILED: {failure}")
        return 1
    print(f"OK: {summary['records']} records of chain {summary['chain']} verify (last hash {summary['last_hash']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
