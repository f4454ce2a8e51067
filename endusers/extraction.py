"""Memory extraction after an answered turn (a background job, never on the request path).

Always: rule-based capture of the person's name and contact details (works offline).
With an LLM configured: (1) extract facts as JSON, (2) for each fact, decide against the most
similar existing memories of that end user — add, update, delete (contradiction) or nothing.
"""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings

from endusers.conf import EXTRACTION_CANDIDATES, EXTRACTION_MAX_FACTS
from endusers.models import Memory
from mejai.errors import ApiError

logger = logging.getLogger(__name__)

FACTS_PROMPT = """You extract durable facts about a customer from one exchange with a support assistant.
Return only JSON: {"facts": [{"text": "...", "kind": "fact" | "preference"}]}.
A fact is short, standalone, in the customer's language, about the customer (who they are, what they
own or ordered, what they were told, what they prefer). Leave out greetings, questions, and anything
about the assistant. Return {"facts": []} when there is nothing worth remembering."""

DECISION_PROMPT = """You keep a customer's memory consistent. Given a new fact and existing memories,
answer only JSON: {"action": "add" | "update" | "delete" | "none", "id": <existing id or null>, "text": "..."}.
- add: the fact is new.
- update: the fact refines or replaces memory `id`; `text` is the merged memory.
- delete: the fact contradicts memory `id` and the old memory is simply no longer true (the new fact is then added).
- none: the fact is already known."""

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _json_reply(text: str) -> dict | None:
    """The JSON object in a model reply (models sometimes wrap it in prose or code fences)."""
    match = _JSON_OBJECT.search(text or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _llm_json(system: str, user: str) -> dict | None:
    from runtime.clients.llm import LLMError, LLMRequest, complete_sync, provider_get

    provider = provider_get()
    if provider.name == "offline":
        return None
    request = LLMRequest(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        model=settings.LLM_MODEL, temperature=0.0, max_tokens=400,
    )
    try:
        text, _calls, _usage = complete_sync(provider, request)
    except LLMError as exc:
        logger.warning("memory extraction: model call failed (%s)", exc.code)
        raise
    return _json_reply(text)


def rules_capture(*, end_user, turn) -> list[str]:
    """Name and contact details from the user's message, without a model; what was captured."""
    from endusers import services
    from endusers.rules import contacts_extract, name_extract

    captured = []
    name = name_extract(turn.user_text)
    if name and end_user.profile.get("name") != name:
        try:
            services.profile_name_set(end_user=end_user, name=name, turn=turn)
            captured.append(f"name:{name}")
        except ApiError:
            pass
    for kind, values in contacts_extract(turn.user_text).items():
        for value in values[:3]:
            try:
                if services.identity_claim(end_user=end_user, kind=kind, value=value) is not None:
                    captured.append(kind)
            except ApiError:
                continue  # something that looked like a number but is not one
    return captured


def _facts(turn) -> list[dict]:
    data = _llm_json(FACTS_PROMPT, f"Customer: {turn.user_text}\nAssistant: {turn.reply_text}")
    facts = []
    for item in (data or {}).get("facts") or []:
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            continue
        kind = item.get("kind") if item.get("kind") in (Memory.Kind.FACT, Memory.Kind.PREFERENCE) else Memory.Kind.FACT
        facts.append({"text": item["text"].strip(), "kind": kind})
    return facts[:EXTRACTION_MAX_FACTS]


def _decide(fact: dict, candidates: list[Memory]) -> dict:
    listing = "\n".join(f"- id {m.pk}: {m.text}" for m in candidates)
    data = _llm_json(DECISION_PROMPT, f"New fact: {fact['text']}\nExisting memories:\n{listing}") or {}
    action = data.get("action") if data.get("action") in ("add", "update", "delete", "none") else "add"
    try:
        target_id = int(data.get("id")) if data.get("id") is not None else None
    except (TypeError, ValueError):
        target_id = None
    by_id = {m.pk: m for m in candidates}
    if action in ("update", "delete") and target_id not in by_id:
        action = "add"  # the model named no memory we showed it: keep the fact rather than guess
    text = data.get("text") if isinstance(data.get("text"), str) and data["text"].strip() else fact["text"]
    return {"action": action, "memory": by_id.get(target_id), "text": text}


def llm_extract(*, end_user, turn) -> list[str]:
    from endusers import services
    from endusers.search import memory_hits

    done = []
    for fact in _facts(turn):
        hits = memory_hits(organization_id=end_user.organization_id, end_user_id=end_user.pk, query=fact["text"],
                           limit=EXTRACTION_CANDIDATES)
        candidates = list(Memory.objects.filter(pk__in=[h.memory_id for h in hits]).order_by("pk"))
        if any(m.text == fact["text"] for m in candidates):
            done.append("none")
            continue
        decision = _decide(fact, candidates) if candidates else {"action": "add", "memory": None, "text": fact["text"]}
        try:
            if decision["action"] == "add":
                services.memory_add(end_user=end_user, text=decision["text"], kind=fact["kind"],
                                    source=Memory.Source.EXTRACTED, turn=turn, actor="extraction")
            elif decision["action"] == "update":
                services.memory_update(memory=decision["memory"], text=decision["text"], actor="extraction", turn=turn)
            elif decision["action"] == "delete":
                services.memory_delete(memory=decision["memory"], actor="extraction", turn=turn)
                services.memory_add(end_user=end_user, text=fact["text"], kind=fact["kind"],
                                    source=Memory.Source.EXTRACTED, turn=turn, actor="extraction")
        except ApiError as exc:
            logger.info("memory extraction: fact skipped (%s)", exc.code)
            continue
        done.append(decision["action"])
    return done


def memory_extract(*, turn_id) -> list[str]:
    """Extract memories from one answered turn; safe to run twice (rules are idempotent, facts deduplicated)."""
    from endusers.selectors import end_user_canonical
    from runtime.models import Turn

    turn = Turn.objects.select_related("session", "session__end_user").filter(pk=turn_id).first()
    if turn is None or turn.status != Turn.Status.COMPLETED:
        return []
    end_user = turn.session.end_user
    if end_user is None:
        return []
    end_user = end_user_canonical(end_user)
    if end_user.erased_at:
        return []
    if Memory.objects.filter(source_turn=turn, source=Memory.Source.EXTRACTED).exists():
        return ["already"]  # a retried job: the model was already asked about this turn
    return rules_capture(end_user=end_user, turn=turn) + llm_extract(end_user=end_user, turn=turn)
