"""Credentials without downtime (issue #14 item 5). Being written: rotation with a grace
period, revocation, the register of issued credentials, and flagging aged ones."""


def sweep(now):
    """Revoke credentials whose grace period ended; tell owners of credentials past their maximum age."""
    return {}
