"""Recertification campaigns (issue #14 item 3). Being written."""


def sweep(now):
    return {}
