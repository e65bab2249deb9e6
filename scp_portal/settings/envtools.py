"""Environment readers that fail loudly, with `NAME_FILE` support for secrets."""
from pathlib import Path
import os

from django.core.exceptions import ImproperlyConfigured

_UNSET = object()


def env(name, default=_UNSET):
    """Read a setting from the environment (or from the file named by NAME_FILE)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is _UNSET:
        raise ImproperlyConfigured(f"The environment variable {name} must be set")
    return default


def env_bool(name, default=False):
    value = env(name, None)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean")


def env_int(name, default):
    value = env(name, None)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc


def env_list(name, default=()):
    value = env(name, None)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]
