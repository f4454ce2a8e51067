"""Numeric query parameters, validated once: a clear 400 naming the field, never a database overflow."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

from mejai.errors import ApiError

# The largest offset worth asking for; far below PostgreSQL's bigint, so no value can overflow a query.
OFFSET_MAX = 1_000_000_000


def query_int(params, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within [minimum, maximum]; absent or empty gives `default`.

    Anything else (not a whole number, out of range) raises ApiError 400 `invalid` with `field=name`.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = str(raw).strip()
    # isdecimal, not int(): int() accepts "1_000", " 12 " and huge values we refuse anyway.
    if not (text.isascii() and text.lstrip("-").isdecimal()) or len(text) > 20 or not minimum <= int(text) <= maximum:
        raise ApiError(
            "invalid",
            f"{name}은(는) {minimum}–{maximum} 사이의 정수여야 해요. ({name} must be a whole number from {minimum} to {maximum}.)",
            400, field=name, extra={"minimum": minimum, "maximum": maximum},
        )
    return int(text)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """limit/offset pages where a bad `limit` or `offset` is a 400 naming it (DRF would silently fall back
    to the default for text, and pass a huge number through to the database)."""

    default_limit = 50
    max_limit = 200

    def get_limit(self, request) -> int:
        return query_int(request.query_params, self.limit_query_param, default=self.default_limit, minimum=1,
                         maximum=self.max_limit)

    def get_offset(self, request) -> int:
        return query_int(request.query_params, self.offset_query_param, default=0, minimum=0, maximum=OFFSET_MAX)
