"""Reads of end-user data, always scoped to an organization (and to one end user for memories)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet

from endusers.conf import GROUNDING_MEMORIES
from endusers.models import EndUser, EndUserMessage, EndUserSession, Identity, Memory
from endusers.normalize import email_normalize, phone_normalize
from endusers.search import memory_hits
from mejai.errors import ApiError
from runtime.text import text_clean

MAX_QUERY_CHARS = 200


MAX_ID = 2**63 - 1


def end_user_canonical(end_user: EndUser) -> EndUser:
    """Follow merges to the end user that holds the data now."""
    seen = set()
    while end_user.merged_into_id and end_user.pk not in seen:
        seen.add(end_user.pk)
        end_user = EndUser.objects.get(pk=end_user.merged_into_id)
    return end_user


def id_parse(value) -> int | None:
    """A positive database id from user input ('12', '#12'), or None."""
    try:
        pk = int(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        return None
    return pk if 0 < pk <= MAX_ID else None


def _not_found() -> ApiError:
    return ApiError("contact_not_found", "Contact not found.", 404)


def contacts_list(*, organization, q: str = "", email: str | None = None, phone: str | None = None) -> QuerySet[EndUser]:
    """The organization's end users (merged ones left out), newest activity first, optionally searched.

    `email` / `phone` are normalized (an invalid one is a 400 naming the field) and matched exactly;
    `q` matches a name or any identity value (case-insensitive substring; trigram-indexed on PostgreSQL).
    """
    users = EndUser.objects.filter(organization=organization, merged_into__isnull=True)
    if email is not None:
        value = email_normalize(email, field="email")
        users = users.filter(pk__in=_ids(Identity.objects.filter(organization=organization, kind="email", value=value)
                                          .values_list("end_user_id", flat=True)))
    if phone is not None:
        value = phone_normalize(phone, field="phone")
        users = users.filter(pk__in=_ids(Identity.objects.filter(organization=organization, kind="phone", value=value)
                                          .values_list("end_user_id", flat=True)))
    q = " ".join(text_clean(q or "").split())[:MAX_QUERY_CHARS]  # no NUL: PostgreSQL refuses it
    if q:
        exact = None
        try:
            if "@" in q:
                exact = ("email", email_normalize(q))
            elif len(re.sub(r"\D", "", q)) >= 8 and not re.search(r"[^\d\s()+\-.]", q):
                exact = ("phone", phone_normalize(q))
        except ApiError:
            exact = None
        if exact is not None:
            # A whole email or phone number: the unique index answers it.
            held = Identity.objects.filter(organization=organization, kind=exact[0], value=exact[1])
            users = users.filter(pk__in=_ids(held.values_list("end_user_id", flat=True)))
        else:
            users = users.filter(pk__in=_contact_search_ids(organization_id=organization.pk, q=q, values=[q]))
    return users.prefetch_related(
        Prefetch("identities", queryset=Identity.objects.order_by("kind", "pk"))
    ).order_by("-last_seen_at", "-pk")


# A search matching at most this many end users is resolved to a list of ids first: with a subquery,
# PostgreSQL walks the newest-first index hoping to meet matches early, which for a rare match
# means reading every contact.
ID_LIST_CAP = 1000


def _ids(values_queryset):
    """The matching ids as a list when there are few of them, else the subquery itself."""
    ids = list(values_queryset[: ID_LIST_CAP + 1])
    return ids if len(ids) <= ID_LIST_CAP else values_queryset


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _contact_search_ids(*, organization_id: int, q: str, values: list[str]):
    """Ids of end users whose name contains q, or who hold an identity containing q (or its normalized form).

    On PostgreSQL a UNION of two trigram-indexed lookups (an OR across the join would scan every end user).
    """
    from django.db import connection
    from django.db.models.expressions import RawSQL

    if connection.vendor == "postgresql":
        identity_like = " OR ".join(['UPPER("value"::text) LIKE UPPER(%s)'] * len(values))
        sql = (
            'SELECT "id" FROM "A_end_users" WHERE "organization_id" = %s AND UPPER("display_name"::text) LIKE UPPER(%s) '
            f'UNION SELECT "end_user_id" FROM "A_end_user_identities" WHERE "organization_id" = %s AND ({identity_like})'
        )
        params = [organization_id, _like(q), organization_id, *[_like(v) for v in values]]
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} LIMIT {ID_LIST_CAP + 1}", params)
            ids = [row[0] for row in cursor.fetchall()]
        return ids if len(ids) <= ID_LIST_CAP else RawSQL(sql, params)
    identity_match = Q()
    for value in values:
        identity_match |= Q(value__icontains=value)
    held = Identity.objects.filter(identity_match, organization_id=organization_id).values("end_user_id")
    return EndUser.objects.filter(Q(display_name__icontains=q) | Q(pk__in=held), organization_id=organization_id).values("pk")


def contact_get(*, organization, contact_id) -> EndUser:
    pk = id_parse(contact_id)
    end_user = EndUser.objects.filter(pk=pk, organization=organization).first() if pk else None
    if end_user is None:
        raise _not_found()
    return end_user


@dataclass
class ContactDetail:
    end_user: EndUser
    identities: list
    sessions: list
    memories: list
    recent_turns: list
    counts: dict


def contact_detail(*, end_user: EndUser, sessions: int = 20, memories: int = 50, turns: int = 20) -> ContactDetail:
    """Everything an operator sees on one contact: identities, sessions, memories, recent turns."""
    from django.db.models import Count, Sum

    session_rows = list(
        EndUserSession.objects.filter(end_user=end_user).select_related("session__agent").order_by("-last_seen_at")[:sessions]
    )
    turn_rows = list(
        EndUserMessage.objects.filter(end_user=end_user).select_related("turn").order_by("-created_at")[:turns]
    )
    totals = EndUserSession.objects.filter(end_user=end_user).aggregate(sessions=Count("pk"), messages=Sum("message_count"))
    memory_rows = list(memories_active(end_user=end_user)[:memories])
    memory_count = len(memory_rows) if len(memory_rows) < memories else memories_active(end_user=end_user).count()
    return ContactDetail(
        end_user=end_user,
        identities=list(end_user.identities.order_by("kind", "pk")),
        sessions=session_rows,
        memories=memory_rows,
        recent_turns=[row.turn for row in turn_rows],
        counts={"sessions": totals["sessions"], "messages": totals["messages"] or 0, "memories": memory_count},
    )


def memories_active(*, end_user: EndUser) -> QuerySet[Memory]:
    return Memory.objects.filter(end_user=end_user, superseded_by__isnull=True, deleted_at__isnull=True).order_by(
        "-created_at", "-pk"
    )


def memory_get_for_end_user(*, end_user: EndUser, memory_id) -> Memory:
    """One of this end user's active memories, or a 404 that says nothing about anyone else's."""
    pk = id_parse(memory_id)
    memory = Memory.objects.filter(pk=pk, end_user=end_user, superseded_by__isnull=True, deleted_at__isnull=True).first() if pk else None
    if memory is None:
        raise ApiError("memory_not_found", "그 기억을 찾을 수 없어요. (Memory not found.)", 404, field="memory_id")
    return memory


def search_query_validate(query) -> str:
    query = " ".join(text_clean(query).split()) if isinstance(query, str) else ""  # no NUL: PostgreSQL refuses it
    if not query:
        raise ApiError("empty_query", "검색어를 입력해 주세요. (The search query is empty.)", 400, field="q")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError("query_too_long", f"검색어는 {MAX_QUERY_CHARS}자 이하로 입력해 주세요. (The query is limited to "
                       f"{MAX_QUERY_CHARS} characters.)", 400, field="q")
    return query


def _with_scores(hits) -> list[Memory]:
    by_id = Memory.objects.in_bulk([h.memory_id for h in hits])
    result = []
    for hit in hits:
        memory = by_id.get(hit.memory_id)
        if memory is not None:
            memory.score = hit.score
            result.append(memory)
    return result


def memory_search(*, end_user: EndUser, query: str, limit: int = 10) -> list[Memory]:
    """This end user's active memories ranked for a query (each with `.score`); empty query is a 400."""
    query = search_query_validate(query)
    return _with_scores(memory_hits(organization_id=end_user.organization_id, end_user_id=end_user.pk, query=query,
                                    limit=limit))


def memory_search_org(*, organization, query: str, limit: int = 10) -> list[Memory]:
    """The organization-wide memories (no end user) ranked for a query."""
    query = search_query_validate(query)
    return _with_scores(memory_hits(organization_id=organization.pk, end_user_id=None, query=query, limit=limit))


def grounding_for(*, end_user: EndUser, organization, query: str):
    """Profile (name, preferences) and the top memories for this message — the context builder's input."""
    from runtime.context import Grounding

    end_user = end_user_canonical(end_user)
    if end_user.erased_at:
        return None
    profile = {}
    if end_user.profile.get("name") or end_user.display_name:
        profile["name"] = end_user.profile.get("name") or end_user.display_name
    preferences = list(
        memories_active(end_user=end_user).filter(kind=Memory.Kind.PREFERENCE).values_list("text", flat=True)[:5]
    )
    if preferences:
        profile["preferences"] = preferences
    memories: list[dict] = []
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    if query:
        hits = memory_hits(organization_id=end_user.organization_id, end_user_id=end_user.pk, query=query,
                           limit=GROUNDING_MEMORIES)
        # Internal org-wide knowledge (discount codes, staff notes) reaches only the organization's own
        # staff (an `account` identity, the assistant channel); customers get the public memories.
        staff = Identity.objects.filter(end_user=end_user, kind="account", verified=True).exists()
        hits += memory_hits(organization_id=end_user.organization_id, end_user_id=None, query=query,
                            limit=GROUNDING_MEMORIES, public_only=not staff)
        hits.sort(key=lambda h: -h.score)
        memories = [{"id": m.pk, "text": m.text, "score": m.score} for m in _with_scores(hits[:GROUNDING_MEMORIES])]
    return Grounding(profile=profile, memories=memories)


@dataclass
class DuplicateCandidate:
    source: EndUser  # holds the value only as an unverified claim
    target: EndUser  # holds the identity, verified
    kind: str
    value: str
    # A typed value proves nothing: such a match is never a merge proposal until the operator has
    # proof of ownership (e.g. the person signs in, or answers a code sent to that address).
    proven: bool = False


def duplicate_candidates(*, organization=None) -> list[DuplicateCandidate]:
    """End users who claimed an email or phone that another end user holds verified (all unproven claims)."""
    users = EndUser.objects.filter(merged_into__isnull=True, erased_at__isnull=True, profile__has_key="claims")
    if organization is not None:
        users = users.filter(organization=organization)
    found = []
    for user in users.iterator(chunk_size=500):
        for kind, value in (user.profile.get("claims") or {}).items():
            if kind not in ("email", "phone") or not isinstance(value, str):
                continue
            identity = (
                Identity.objects.select_related("end_user")
                .filter(organization_id=user.organization_id, kind=kind, value=value, verified=True)
                .exclude(end_user=user)
                .first()
            )
            if identity is not None and identity.end_user.merged_into_id is None:
                found.append(DuplicateCandidate(user, identity.end_user, kind, value, proven=False))
    return found
