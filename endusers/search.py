"""Memory search: full-text (prefix terms, Korean particles tolerated) + trigram similarity.

PostgreSQL ranks with a stored `to_tsvector('simple')` column, `to_tsquery` prefix terms and
`pg_trgm` word similarity in one query; SQLite gets the same ranking computed in Python over the
end user's active memories (bounded), so both databases find `환불은 …` for `환불 규정`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection

from endusers.conf import MEMORY_SEARCH_SCAN_LIMIT, MEMORY_SIMILARITY_THRESHOLD

_WORD = re.compile(r"\w+", re.UNICODE)
# Korean particles (josa) and endings that follow a noun; the stem is searched as well.
_PARTICLES = sorted(
    ["은", "는", "이", "가", "을", "를", "에", "의", "로", "으로", "에서", "에게", "께", "와", "과", "도", "만",
     "요", "이요", "까지", "부터", "한테", "처럼", "보다", "이나", "나", "랑", "이랑", "이에요", "예요", "입니다"],
    key=len, reverse=True,
)
MAX_TERMS = 12


def query_terms(query: str) -> list[str]:
    """Lower-cased search words plus their particle-free stems ('환불은' -> '환불은', '환불')."""
    words = [w.lower() for w in _WORD.findall(query or "")]
    long_words = [w for w in words if len(w) > 1]
    words = long_words or words  # one-character words only count when nothing else was typed
    terms: list[str] = []
    for word in words:
        candidates = [word]
        for particle in _PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= 2:
                candidates.append(word[: -len(particle)])
                break
        for term in candidates:
            if term not in terms:
                terms.append(term)
    return terms[:MAX_TERMS]


def tsquery_text(terms: list[str]) -> str:
    """An OR of prefix terms for to_tsquery: '환불':* | '규정':*."""
    return " | ".join("'" + t.replace("'", "''").replace("\\", "") + "':*" for t in terms)


@dataclass
class Hit:
    memory_id: int
    score: float


_PG_USER_SQL = """
    WITH mine AS MATERIALIZED (
        SELECT id, search_vector, created_at FROM "A_end_user_memories"
        WHERE end_user_id = %(scope)s AND superseded_by_id IS NULL AND deleted_at IS NULL
    ), hits AS (
        SELECT id, created_at, ts_rank(search_vector, to_tsquery('simple'::regconfig, %(tsq)s), 1) AS rank
        FROM mine WHERE search_vector @@ to_tsquery('simple'::regconfig, %(tsq)s)
    )
    SELECT h.id, h.rank + word_similarity(%(raw)s, m.text) AS score, h.created_at
    FROM hits h JOIN "A_end_user_memories" m ON m.id = h.id
    UNION ALL
    SELECT id, word_similarity(%(raw)s, text), created_at FROM "A_end_user_memories"
    WHERE end_user_id = %(scope)s AND superseded_by_id IS NULL AND deleted_at IS NULL
      AND (SELECT count(*) FROM hits) < %(limit)s
      AND NOT search_vector @@ to_tsquery('simple'::regconfig, %(tsq)s)
      AND word_similarity(%(raw)s, text) >= %(threshold)s
    ORDER BY 2 DESC, 3 DESC
    LIMIT %(limit)s
"""

_PG_ORG_SQL = """
    SELECT m.id, ts_rank(m.search_vector, q.tsq, 1) + word_similarity(%(raw)s, m.text) AS score
    FROM "A_end_user_memories" m, (SELECT to_tsquery('simple'::regconfig, %(tsq)s) AS tsq) q
    WHERE m.organization_id = %(scope)s AND m.end_user_id IS NULL
      AND m.superseded_by_id IS NULL AND m.deleted_at IS NULL AND (m.is_public OR NOT %(public_only)s)
      AND (m.search_vector @@ q.tsq OR %(raw)s <%% m.text)
    ORDER BY score DESC, m.created_at DESC
    LIMIT %(limit)s
"""


def _pg_search(*, end_user_id: int | None, organization_id: int, terms: list[str], limit: int,
               public_only: bool = False) -> list[Hit]:
    """One end user: read their active memories' search vectors once (an index-only scan of
    memory_user_search_idx, ~1k entries at most), keep the full-text hits ranked by ts_rank + word
    similarity (only hits' texts are read from the table), and fill up with trigram-similar ones
    (typos) when there are fewer hits than asked. A global GIN index would read every person's
    posting list for a common word. Org-wide memories use partial GIN indexes."""
    params = {"raw": " ".join(terms), "tsq": tsquery_text(terms), "limit": limit, "public_only": public_only,
              "threshold": MEMORY_SIMILARITY_THRESHOLD, "scope": end_user_id if end_user_id else organization_id}
    with connection.cursor() as cursor:
        if end_user_id is None:
            # `<%` uses this threshold; set for the connection, only memory search uses the operator.
            cursor.execute("SELECT set_config('pg_trgm.word_similarity_threshold', %s, false)",
                           [str(MEMORY_SIMILARITY_THRESHOLD)])
            cursor.execute(_PG_ORG_SQL, params)
        else:
            cursor.execute(_PG_USER_SQL, params)
        return [Hit(row[0], round(float(row[1]), 4)) for row in cursor.fetchall()]


def _trigrams(text: str) -> set[str]:
    grams: set[str] = set()
    for word in _WORD.findall(text.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def fallback_score(*, terms: list[str], text: str) -> tuple[bool, float]:
    """The SQLite ranking, mirroring PostgreSQL's: (full-text hit?, score). A hit is a query term that
    starts a word of the text; the score adds the trigram similarity of the terms to the text."""
    words = [w.lower() for w in _WORD.findall(text)]
    matched = sum(1 for t in terms if any(w.startswith(t) for w in words))
    query_grams = _trigrams(" ".join(terms))
    similarity = len(query_grams & _trigrams(text)) / len(query_grams) if query_grams else 0.0
    return matched > 0, round((matched / len(terms)) * 0.1 * bool(terms) + similarity, 4)


def memory_hits(*, organization_id: int, end_user_id: int | None, query: str, limit: int,
                public_only: bool = False) -> list[Hit]:
    """Ranked active memories of one end user (or the organization's org-wide ones) for a query.

    public_only: of the org-wide ones, only those marked public (what a customer may be told).
    """
    terms = query_terms(query)
    if not terms:
        return []
    if connection.vendor == "postgresql":
        return _pg_search(end_user_id=end_user_id, organization_id=organization_id, terms=terms, limit=limit,
                          public_only=public_only)

    from endusers.models import Memory

    rows = Memory.objects.filter(organization_id=organization_id, end_user_id=end_user_id,
                                 superseded_by__isnull=True, deleted_at__isnull=True)
    if public_only:
        rows = rows.filter(is_public=True)
    hits, similar = [], []
    for pk, text in rows.order_by("-created_at").values_list("pk", "text")[:MEMORY_SEARCH_SCAN_LIMIT]:
        matched, score = fallback_score(terms=terms, text=text)
        if matched:
            hits.append(Hit(pk, score))
        elif score >= MEMORY_SIMILARITY_THRESHOLD:
            similar.append(Hit(pk, score))
    if len(hits) < limit:
        hits += similar
    hits.sort(key=lambda h: (-h.score, -h.memory_id))
    return hits[:limit]
