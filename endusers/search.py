"""Memory search: full-text (prefix terms, Korean particles tolerated) + trigram similarity.

PostgreSQL ranks with `to_tsvector('simple')` / `to_tsquery` prefix terms and `pg_trgm`
word similarity in one query; SQLite gets the same ranking computed in Python over the
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


def _pg_search(*, scope_sql: str, scope_params: list, query: str, terms: list[str], limit: int) -> list[Hit]:
    # Both conditions are served by GIN indexes (memory_fts_idx on the stored search_vector,
    # memory_trgm_idx for `<%`), so only matching rows are read and ranked.
    sql = f"""
        SELECT m.id, ts_rank(m.search_vector, q.tsq, 1) + word_similarity(%s, m.text) AS score
        FROM "A_end_user_memories" m, (SELECT to_tsquery('simple'::regconfig, %s) AS tsq) q
        WHERE {scope_sql} AND m.superseded_by_id IS NULL AND m.deleted_at IS NULL
          AND (m.search_vector @@ q.tsq OR %s <%% m.text)
        ORDER BY score DESC, m.created_at DESC
        LIMIT %s
    """
    raw = " ".join(terms)
    with connection.cursor() as cursor:
        # `<%` uses this threshold; set for the connection, only memory search uses the operator.
        cursor.execute("SELECT set_config('pg_trgm.word_similarity_threshold', %s, false)",
                       [str(MEMORY_SIMILARITY_THRESHOLD)])
        cursor.execute(sql, [raw, tsquery_text(terms), *scope_params, raw, limit])
        return [Hit(row[0], round(float(row[1]), 4)) for row in cursor.fetchall()]


def _trigrams(text: str) -> set[str]:
    grams: set[str] = set()
    for word in _WORD.findall(text.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def fallback_score(*, terms: list[str], text: str) -> float:
    """The SQLite ranking: share of query terms found as word prefixes, plus trigram similarity."""
    words = [w.lower() for w in _WORD.findall(text)]
    matched = sum(1 for t in terms if any(w.startswith(t) for w in words))
    fts = matched / len(terms) if terms else 0.0
    query_grams = _trigrams(" ".join(terms))
    similarity = len(query_grams & _trigrams(text)) / len(query_grams) if query_grams else 0.0
    if fts == 0 and similarity < MEMORY_SIMILARITY_THRESHOLD:
        return 0.0
    return round(fts * 0.1 + similarity, 4)


def memory_hits(*, organization_id: int, end_user_id: int | None, query: str, limit: int) -> list[Hit]:
    """Ranked active memories of one end user (or the organization's org-wide ones) for a query."""
    terms = query_terms(query)
    if not terms:
        return []
    if connection.vendor == "postgresql":
        if end_user_id is None:
            return _pg_search(scope_sql="m.organization_id = %s AND m.end_user_id IS NULL",
                              scope_params=[organization_id], query=query, terms=terms, limit=limit)
        return _pg_search(scope_sql="m.end_user_id = %s", scope_params=[end_user_id], query=query, terms=terms, limit=limit)

    from endusers.models import Memory

    rows = Memory.objects.filter(organization_id=organization_id, end_user_id=end_user_id,
                                 superseded_by__isnull=True, deleted_at__isnull=True)
    hits = []
    for pk, text in rows.order_by("-created_at").values_list("pk", "text")[:MEMORY_SEARCH_SCAN_LIMIT]:
        score = fallback_score(terms=terms, text=text)
        if score > 0:
            hits.append(Hit(pk, score))
    hits.sort(key=lambda h: (-h.score, -h.memory_id))
    return hits[:limit]
