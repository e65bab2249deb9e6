"""Data-sharing agreements (issue #14 item 4). Being written: upload, pinning by SHA-256,
the approval gate and suspension at expiry."""


def sweep(now):
    """Suspend integrations whose agreement expired."""
    return {}
