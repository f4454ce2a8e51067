"""How the runtime finds the end user behind an identity without importing `endusers`.

`endusers` registers its resolver at start-up (EndusersConfig.ready); without it, callers get no
end user and conversations stay anonymous.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EndUserResolver = Callable[..., Any]

_resolver: EndUserResolver | None = None


def end_user_resolver_register(resolver: EndUserResolver) -> None:
    """`resolver(*, organization, kind, value, verified)` returns the end user holding that identity."""
    global _resolver
    _resolver = resolver


def end_user_resolve(*, organization, kind: str, value: str, verified: bool):
    """The end user for (kind, value) in the organization, or None when no resolver is registered.

    Errors of the resolver (ApiError 400 for a malformed value) propagate to the caller.
    """
    if _resolver is None:
        return None
    return _resolver(organization=organization, kind=kind, value=value, verified=verified)
