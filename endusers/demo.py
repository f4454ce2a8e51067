"""Demo data for the end-users app: one known customer with memories, and an org-wide policy memory."""

from __future__ import annotations

from endusers.models import Memory
from endusers.services import contact_upsert, memory_add, profile_name_set

DEMO_MEMORIES = [
    ("환불은 구매 후 7일 이내 가능하다고 안내받음", Memory.Kind.FACT),
    ("연락은 이메일을 선호함", Memory.Kind.PREFERENCE),
]
ORG_MEMORY = "배송은 평균 2일 걸리며, 제주·도서 지역은 하루 더 걸립니다."


def demo_setup(*, organization, agent) -> list[str]:
    person, created = contact_upsert(organization=organization, external_id="demo-customer-1",
                                     email="minsu@example.com")
    if created:
        # Only for a new customer: what was forgotten since (/forget, an operator's delete) stays forgotten.
        profile_name_set(end_user=person, name="민수")
        for text, kind in DEMO_MEMORIES:
            memory_add(end_user=person, text=text, kind=kind, source=Memory.Source.ADMIN, actor="demo_setup")
    if not Memory.objects.filter(organization=organization, end_user__isnull=True, text=ORG_MEMORY).exists():
        memory_add(organization=organization, text=ORG_MEMORY, source=Memory.Source.ADMIN, actor="demo_setup",
                   is_public=True)
    # What is stored now (an operator may have renamed the customer or added memories since).
    person.refresh_from_db()
    remembered = Memory.objects.filter(end_user=person, deleted_at__isnull=True, superseded_by__isnull=True).count()
    name = person.profile.get("name") or "(이름 없음 · no name)"
    return [
        f"  customer:  {name} (#{person.pk}, external_id demo-customer-1) with {remembered} memories: "
        "try POST /api/runtime/chat {\"message\": \"환불 규정 알려줘\", \"external_id\": \"demo-customer-1\"}",
        f"  contacts:  GET /api/contacts/{person.pk} (Authorization: Bearer <demo API key>)",
    ]
