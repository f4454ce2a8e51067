"""The storage boundary: every stored string and JSON value is made storable here, once.

PostgreSQL refuses U+0000 in `text` and `jsonb` (and the `\\u0000` escape in `jsonb`), both
PostgreSQL and SQLite refuse lone UTF-16 surrogates (they are not encodable as UTF-8), and
`jsonb` refuses NaN and ±Infinity, which Python's `json` happily parses from a request body.
Any of these reaching the database is a 500 (JSON API) or a stream that stops (SSE) with a
turn left `streaming`.

The field classes below clean in `get_prep_value`, which Django calls for `.save()`,
`.create()`, `QuerySet.update()`, `bulk_create()`/`bulk_update()` and lookups alike, so no
write path can skip it. They deconstruct as the stock Django fields: swapping a model's field
for one of them needs no migration.

What is changed, and only this:
  U+0000                         removed
  a lone surrogate U+D800–DFFF   replaced by U+FFFD (the replacement character)
  a float NaN / ±Infinity in JSON  stored as null
Dict keys in JSON are cleaned like strings. Everything else is stored as given.
"""

from __future__ import annotations

import math
import re

from django.db import models

_REFUSED = re.compile("[\x00\ud800-\udfff]")


def storage_text(value: str) -> str:
    """`value` without what a database refuses (see the module docstring); unchanged otherwise."""
    if not _REFUSED.search(value):
        return value
    return _REFUSED.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)


def storage_json(value):
    """A JSON-able value with every string (keys too) passed through storage_text and non-finite
    floats as None. Returns the same object when nothing needed cleaning (no copy on the hot path)."""
    if isinstance(value, str):
        return storage_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        cleaned = {}
        changed = False
        for key, item in value.items():
            new_key = storage_text(key) if isinstance(key, str) else key
            new_item = storage_json(item)
            changed = changed or new_key is not key or new_item is not item
            cleaned[new_key] = new_item
        return cleaned if changed else value
    if isinstance(value, (list, tuple)):
        items = [storage_json(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value


class _StockDeconstruct:
    """Deconstruct as the Django field this one extends, so migrations do not see the swap."""

    stock_path = ""

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, self.stock_path, args, kwargs


class TextField(_StockDeconstruct, models.TextField):
    stock_path = "django.db.models.TextField"

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return storage_text(value) if isinstance(value, str) else value


class CharField(_StockDeconstruct, models.CharField):
    stock_path = "django.db.models.CharField"

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return storage_text(value) if isinstance(value, str) else value


class SlugField(_StockDeconstruct, models.SlugField):
    stock_path = "django.db.models.SlugField"

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return storage_text(value) if isinstance(value, str) else value


class JSONField(_StockDeconstruct, models.JSONField):
    stock_path = "django.db.models.JSONField"

    def get_prep_value(self, value):
        return super().get_prep_value(storage_json(value))
