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


# --- masking personal text for operator lists (endusers registers its PII masking) -------------

_text_masker: Callable[[str], str] | None = None
_identity_masker: Callable[..., str] | None = None


def maskers_register(*, text: Callable[[str], str], identity: Callable[..., str]) -> None:
    """`text(s) -> str` masks emails, phones, cards in free text; `identity(*, kind, value) -> str` one identity."""
    global _text_masker, _identity_masker
    _text_masker, _identity_masker = text, identity


def text_mask(text: str) -> str:
    """Free text with personal data masked (unchanged when no masker is registered)."""
    return _text_masker(text) if _text_masker is not None else text


def identity_mask(*, kind: str, value: str) -> str:
    """One identity's value masked for display (unchanged when no masker is registered)."""
    return _identity_masker(kind=kind, value=value) if _identity_masker is not None else value
