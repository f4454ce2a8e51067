"""The one reader of configuration from the environment, for settings.py and every app's conf.py.

Each reader takes a variable name and a default. When Django settings are loaded and define an
attribute of the same name, that value wins (tests and deployments can set it either way); while
settings.py itself is being imported only the environment is read. A value that cannot be parsed
raises ImproperlyConfigured naming the variable, instead of silently falling back to the default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MISSING = object()


def _from_settings(name: str):
    from django.conf import settings

    if not settings.configured:  # settings.py is being imported: only the environment exists
        return _MISSING
    return getattr(settings, name, _MISSING)


def _raw(name: str):
    """The configured value: a Django setting of that name, else the stripped environment value, else None."""
    value = _from_settings(name)
    if value is not _MISSING and value is not None:
        return value
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _bounded(name: str, value, minimum):
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else str(value)


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}.") from None
    return _bounded(name, number, minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}.")
    return _bounded(name, number, minimum)


def env_list(name: str, default: Iterable[str] | str = ()) -> list[str]:
    """A comma-separated list; a Django setting may also be a list or tuple."""
    value = _raw(name)
    if value is None:
        value = default
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip() for item in value if str(item).strip()]
