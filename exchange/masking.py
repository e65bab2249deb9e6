"""Field masking rules of data contracts (spec §4.4 data minimization).

Rules: `plain`, `redact`, `last:N` (keep the last N characters), `year` (dates: year only),
`hash` (keyed HMAC-SHA256, stable per deployment, for pseudonymous linkage).
"""
import datetime
import hashlib
import hmac

from django.conf import settings

REDACTED = "***"


def _last(value, n):
    text = str(value)
    return "*" * max(len(text) - n, 0) + text[-n:] if n > 0 else "*" * len(text)


def _year(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.year
    return int(str(value)[:4])


def _keyed_hash(value):
    key = settings.SCP_PSEUDONYM_KEY.encode()
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def validate_rule(rule):
    """Raise ValueError for a rule this module does not know."""
    if rule in {"plain", "redact", "year", "hash"}:
        return
    if rule.startswith("last:") and rule[5:].isdigit():
        return
    raise ValueError(f"unknown masking rule {rule!r}")


def mask(value, rule):
    """Apply one masking rule to one value; None stays None."""
    if value is None:
        return None
    if rule == "plain":
        return str(value) if not isinstance(value, (int, float, bool, str)) else value
    if rule == "redact":
        return REDACTED
    if rule == "year":
        return _year(value)
    if rule == "hash":
        return _keyed_hash(value)
    if rule.startswith("last:"):
        return _last(value, int(rule[5:]))
    raise ValueError(f"unknown masking rule {rule!r}")


def minimize(obj, field_rules):
    """The dict of only the contract's fields of `obj` (a model instance, or a row of
    `values()`), each masked by its rule."""
    if isinstance(obj, dict):
        return {field: mask(obj[field], rule) for field, rule in field_rules.items()}
    return {field: mask(getattr(obj, field), rule) for field, rule in field_rules.items()}
