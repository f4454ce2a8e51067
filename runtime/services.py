"""The runtime pipeline: one entry point for every channel, in a streaming and a synchronous form.

    turn_start           store the user's message as a Turn (idempotent), sync
    turn_answer_stream   answer a stored turn: order, commands, context, LLM, finish (async events)
    turn_stream          turn_start + turn_answer_stream
    turn_respond         turn_stream gathered into a TurnOutcome (async)
    turn_run / turn_answer   the same, for synchronous callers (Celery tasks, commands)

See docs/runtime.md for the rules each step keeps and docs/architecture.md for where it sits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mejai.concurrency import db_release, released
from mejai.errors import ApiError
from runtime import commands, selectors, signals, turnstore
from runtime.answer import answer_assemble
from runtime.clients.llm import LLMError, LLMRequest, StreamEnd, TextDelta, ToolCall, Usage, provider_get
from runtime.context import context_build
from runtime.events import TurnEvent, event_delta, event_error, event_message, event_start
from runtime.identities import end_user_resolve
from runtime.models import Agent, Channel, Organization, Session, Turn
from runtime.storage import storage_text
from runtime.text import user_text_validate
from runtime.tools import ModelTool, ToolArgumentsError, ToolCallContext, tools_for

logger = logging.getLogger(__name__)

# Tools through which the model shapes the reply: quick replies and a form to fill.
OUTPUT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "suggest_quick_replies",
            "description": "Offer the user up to 5 short replies they can tap instead of typing.",
            "parameters": {
                "type": "object",
                "properties": {"replies": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
                "required": ["replies"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "request_user_info",
            "description": (
                "Ask the user to fill in a short form, only when the conversation needs it "
                "(for example a name and email to follow up)."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string",
                                         "description": "one of name, email, phone, order_id (or the "
                                                        "operator's own); never passwords or card numbers"},
                                "label": {"type": "string"},
                                "type": {"type": "string", "enum": ["string", "email", "phone"]},
                                "required": {"type": "boolean"},
                            },
                            "required": ["name"],
                        },
                        "maxItems": 6,
                    },
                },
                "required": ["fields"],
            },
        },
    },
]

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_QUICK_REPLIES = 5
MAX_QUICK_REPLY_CHARS = 40


@dataclass
class TurnOutcome:
    turn_id: str | None
    session_id: str | None
    payload: dict | None  # the standard payload when answered
    error: dict | None  # the error event's data when not

    @property
    def ok(self) -> bool:
        return self.payload is not None


class TurnOrderTimeout(Exception):
    pass


# --- storing ---------------------------------------------------------------------------

def idempotency_key_make(*, organization_id: int, channel: str, scope: str, client_message_id: str) -> str:
    raw = f"{organization_id}|{channel}|{scope}|{client_message_id}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _idempotent_replay(existing: Turn, session: Session | None) -> Turn:
    """The stored turn of a retried message; 409 when it belongs to another conversation than the one named."""
    if session is not None and existing.session_id != session.pk:
        raise ApiError(
            "idempotency_conflict",
            "이 client_message_id는 다른 대화의 메시지에 이미 쓰였습니다. "
            "(This client_message_id was already used for a message of another conversation.)",
            409, field="client_message_id",
        )
    return existing


def _client_message_id_clean(client_message_id: str) -> str:
    cmid = storage_text((client_message_id or "").strip())  # hashed: no lone surrogates
    if len(cmid) > 128:
        raise ApiError("invalid", "client_message_id is limited to 128 characters.", 400, field="client_message_id")
    return cmid


def session_create(
    *, organization: Organization, agent: Agent, channel: str, end_user=None, metadata: dict | None = None
) -> Session:
    return Session.objects.create(
        organization=organization, agent=agent, channel=channel, end_user=end_user, metadata=metadata or {}
    )


def turn_start(
    *,
    organization: Organization,
    agent: Agent,
    channel: str,
    text: str,
    session: Session | None = None,
    end_user=None,
    client_message_id: str = "",
    idempotency_scope: str = "",
    session_metadata: dict | None = None,
) -> tuple[Turn, bool]:
    """Store the user's message as the session's next turn; (turn, created).

    A repeated client_message_id within the same channel principal returns the first turn.
    Without a session a new one is opened in the same transaction.
    """
    text = user_text_validate(text)
    cmid = _client_message_id_clean(client_message_id)
    key = None
    if cmid:
        # A message of a named session is keyed by that session, so another conversation reusing the
        # id gets a turn of its own; a first message (no session yet) by the channel principal. A
        # retry of a first message that now names its session is found by the principal key.
        principal_key = idempotency_key_make(organization_id=organization.pk, channel=channel,
                                             scope=idempotency_scope, client_message_id=cmid)
        keys = [principal_key]
        if session is not None:
            keys.insert(0, idempotency_key_make(organization_id=organization.pk, channel=channel,
                                                scope=f"{idempotency_scope}|session:{session.pk}",
                                                client_message_id=cmid))
        key = keys[0]
        for candidate in keys:
            existing = Turn.objects.select_related("session").filter(idempotency_key=candidate).first()
            if existing:
                return _idempotent_replay(existing, session), False
    try:
        with transaction.atomic():
            if session is None:
                # A session created in this transaction is invisible to others until commit: no lock needed.
                locked = session_create(
                    organization=organization, agent=agent, channel=channel, end_user=end_user, metadata=session_metadata
                )
            else:
                # The row lock serialises sequence numbers across processes (SQLite: IMMEDIATE transactions).
                locked = Session.objects.select_for_update(of=("self",)).get(pk=session.pk)
            seq = locked.last_seq + 1
            updates = {"last_seq": seq, "last_activity_at": timezone.now()}
            if end_user is not None and locked.end_user_id is None:
                updates["end_user"] = end_user
            Session.objects.filter(pk=locked.pk).update(**updates)
            for name, value in updates.items():
                setattr(locked, name, value)
            author = {"author": end_user} if end_user is not None else {"author_id": locked.end_user_id}
            turn = Turn.objects.create(
                session=locked, seq=seq, user_text=text, client_message_id=cmid, idempotency_key=key, **author
            )
            transaction.on_commit(lambda: signals.turn_stored.send(sender=Turn, turn=turn))
    except IntegrityError:
        if key:
            existing = Turn.objects.select_related("session").filter(idempotency_key=key).first()
            if existing:
                return _idempotent_replay(existing, session), False
        raise
    # The stored rows are in memory: attach the organization and agent instead of reading them back.
    if locked.organization_id != organization.pk or locked.agent_id != agent.pk:
        return Turn.objects.select_related("session", "session__agent", "session__organization").get(pk=turn.pk), True
    locked.organization, locked.agent = organization, agent
    return turn, True


def turn_store_without_answer(*, turn_id, code: str, message: str) -> bool:
    """Keep a pending message without answering it (status `stored`), so it does not hold up the
    session's later turns; `code`/`message` say why. False when the turn was not pending."""
    return bool(Turn.objects.filter(pk=turn_id, status=Turn.Status.PENDING).update(
        status=Turn.Status.STORED, error_code=code[:40], error=message[:500], completed_at=timezone.now()
    ))


def turn_reopen(*, turn_id) -> bool:
    """Make a `stored` turn answerable again (pending), e.g. when its delivery is retried."""
    return bool(Turn.objects.filter(pk=turn_id, status=Turn.Status.STORED).update(
        status=Turn.Status.PENDING, error_code="", error="", completed_at=None
    ))


def turn_payload(turn: Turn) -> dict:
    """The standard payload of a turn, identical in every API and channel."""
    payload = turn.payload or {}
    return {
        "message": turn.reply_text,
        "quick_replies": payload.get("quick_replies", []),
        "render_plan": payload.get("render_plan", []),
        "response_schema": payload.get("response_schema"),
        # The model stopped at its token limit (or a content filter): the message is not whole.
        "truncated": bool(payload.get("truncated")),
        "session_id": str(turn.session_id),
        "turn_id": str(turn.id),
        "usage": {
            "model": turn.model or None,
            "prompt_version": turn.prompt_version_id,
            "tokens_in": turn.tokens_in,
            "tokens_out": turn.tokens_out,
            "ttft_ms": turn.ttft_ms,
            "latency_ms": turn.latency_ms,
        },
    }


def _render_plan(message: str, quick_replies: list[dict], response_schema: dict | None) -> list[dict]:
    plan: list[dict] = []
    if message:
        plan.append({"type": "text", "text": message})
    if quick_replies:
        plan.append({"type": "quick_replies", "items": quick_replies})
    if response_schema:
        plan.append({"type": "form", "schema": response_schema})
    return plan


def _quick_replies_from(values) -> list[dict]:
    replies = []
    for value in values or []:
        if isinstance(value, str) and value.strip():
            label = value.strip()[:MAX_QUICK_REPLY_CHARS]
            replies.append({"label": label, "message": label})
    return replies[:MAX_QUICK_REPLIES]


def _response_schema_from(arguments: dict, *, extra_fields=()) -> dict | None:
    """Turn the model's request_user_info call into a JSON Schema the channels can render.

    Only allow-listed fields (runtime/forms.py: standard ones + the agent's extra_form_fields) are
    kept; a secret-like field (password, card number…) is dropped whoever asked for it.
    """
    from runtime.forms import form_field_allowed

    properties, required = {}, []
    for item in arguments.get("fields") or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("name", "")).strip().lower()
        if not _FIELD_NAME.match(name) or name in properties:
            continue
        if not form_field_allowed(name, str(item.get("label") or ""), extra=extra_fields):
            logger.warning("request_user_info: field %r refused (not allowed or secret-like)", name[:32])
            continue
        kind = item.get("type") if item.get("type") in ("string", "email", "phone") else None
        kind = kind or ("email" if name == "email" else "phone" if name == "phone" else "string")
        prop = {"type": "string", "title": str(item.get("label") or name)[:60], "maxLength": 200}
        if kind == "email":
            prop["format"] = "email"
        elif kind == "phone":
            prop["format"] = "phone"
        properties[name] = prop
        if item.get("required", True):
            required.append(name)
    if not properties:
        return None
    schema = {"type": "object", "properties": properties, "required": required}
    if arguments.get("title"):
        schema["title"] = str(arguments["title"])[:100]
    return schema


def _turn_claim(turn_id, *, now=None) -> bool:
    """Mark a pending turn as being answered; False when another process already has it.

    started_at is set here too; when earlier turns make it wait, _turn_begin moves it to after the wait.
    """
    now = now or timezone.now()
    return bool(
        Turn.objects.filter(pk=turn_id, status=Turn.Status.PENDING).update(
            status=Turn.Status.STREAMING, started_at=now, updated_at=now
        )
    )


def _turn_open(turn: Turn) -> tuple[bool, Turn | None]:
    """Claim the turn and, when no earlier turn of its session is unanswered, return it ready to
    answer: (claimed, turn or None when it has to wait). One thread hop for the common case."""
    now = timezone.now()
    if not _turn_claim(turn.id, now=now):
        return False, None
    if _predecessors_pending(turn):
        return True, None
    if _relations_loaded(turn):
        # The turn turn_start just returned: its session, agent and organization are in memory.
        turn.status, turn.started_at, turn.updated_at = Turn.Status.STREAMING, now, now
        return True, turn
    return True, _turn_reload(turn.id)


def _relations_loaded(turn: Turn) -> bool:
    """Whether answering can use this turn without touching the database for its relations."""
    if not Turn.session.is_cached(turn):
        return False
    session = turn.session
    return (
        Session.agent.is_cached(session)
        and Session.organization.is_cached(session)
        and (session.end_user_id is None or Session.end_user.is_cached(session))
    )


def _turn_begin(turn_id) -> Turn:
    """Its predecessors are answered: this turn's answer starts now."""
    now = timezone.now()
    Turn.objects.filter(pk=turn_id).update(started_at=now, updated_at=now)
    return _turn_reload(turn_id)


def _turn_finish(turn_id, *, loaded: Turn | None = None, **fields) -> Turn:
    """Store a turn's final state; `loaded` (the turn as this process holds it) saves reading it back.
    PostgreSQL: one statement (runtime/turnstore.py); other engines: the ORM transaction below."""
    if turnstore.fast_path_available():
        return turnstore.turn_finish_fast(turn_id, loaded=loaded, **fields)
    with transaction.atomic():
        fields.setdefault("completed_at", timezone.now())
        Turn.objects.filter(pk=turn_id).update(**fields)
        if loaded is None:
            turn = Turn.objects.select_related("session").get(pk=turn_id)
        else:
            turn = loaded
            for name, value in fields.items():
                setattr(turn, name, value)
        Session.objects.filter(pk=turn.session_id).update(last_activity_at=timezone.now())
        transaction.on_commit(lambda: signals.turn_finished.send(sender=Turn, turn=turn))
    return turn


async def _turn_finish_or_fail(turn: Turn, **fields) -> Turn | None:
    """_turn_finish, fail-safe: when the final write fails the turn is marked failed
    (`storage_failed`) and None is returned, so the caller ends the stream with an error event
    instead of leaving the turn `streaming` (which would block the session's next turns)."""
    try:
        return await sync_to_async(_turn_finish)(turn.id, loaded=turn, **fields)
    except Exception:
        logger.exception("turn %s: storing its final state failed", turn.id)
    try:
        return await sync_to_async(_turn_fail_unfinished)(turn.id, intended=fields.get("status"))
    except Exception:
        # Even that failed (database gone): the stale-turn rule fails it once RUNTIME_TURN_STALE_SECONDS pass.
        logger.exception("turn %s: marking it failed failed too", turn.id)
    return None


def _turn_fail_unfinished(turn_id, *, intended: str | None) -> Turn | None:
    """After a failed final write: the stored turn when the write did commit (a hook after the
    commit raised), else None once it is marked failed with `storage_failed`."""
    stored = _turn_reload(turn_id)
    if intended and stored.status == intended:
        return stored
    Turn.objects.filter(pk=turn_id).exclude(status__in=Turn.FINISHED).update(
        status=Turn.Status.FAILED, error_code="storage_failed", error=STORAGE_FAILED_MESSAGE,
        completed_at=timezone.now(),
    )
    return None


def turn_interrupt_unanswered(turn_id) -> bool:
    """Close a stored turn whose request ended before its answer began (the client left while the
    message was being stored or its context built): `interrupted` / `client_disconnected`, as a
    disconnect mid-answer is. Without it the turn stayed `streaming` (stored claimed), so every
    later message of its session and a retry of it waited for the abandoned-turn rule (180 s).
    True when this call closed it (a turn already finished is left as it is)."""
    now = timezone.now()
    closed = bool(Turn.objects.filter(pk=turn_id).exclude(status__in=Turn.FINISHED).update(
        status=Turn.Status.INTERRUPTED, error_code="client_disconnected", completed_at=now, updated_at=now))
    if closed:
        # As _turn_finish does for a disconnect mid-answer: the timeline and the roll-up hear of it.
        turn = _turn_reload(turn_id)
        transaction.on_commit(lambda: signals.turn_finished.send(sender=Turn, turn=turn))
    return closed


async def turn_store_shielded(store):
    """Await `store` (an awaitable storing a message, returning (turn, created)) so that a client leaving
    meanwhile cannot orphan what it stores: on cancellation the store still runs to its end in the
    background and its turn is closed with turn_interrupt_unanswered; the cancellation goes on."""
    task = asyncio.ensure_future(store)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        async def close_when_stored():
            try:
                stored = await task
            except Exception:  # noqa: BLE001 - nothing stored, nothing to close
                return
            turn, created = stored
            if created:  # a retry's turn belongs to the request that stored it
                # Not thread-sensitive: the request's own thread is gone with the request.
                await sync_to_async(released(turn_interrupt_unanswered), thread_sensitive=False)(turn.pk)

        _orphans.add(orphan := asyncio.ensure_future(close_when_stored()))
        orphan.add_done_callback(_orphans.discard)
        raise


_orphans: set = set()  # close_when_stored tasks, referenced until done


ANSWER_FAILED_MESSAGE = "답변하지 못했어요. 다시 시도해 주세요. (The answer failed; please try again.)"
STORAGE_FAILED_MESSAGE = "답변을 저장하지 못했어요. 다시 시도해 주세요. (The answer could not be stored; please try again.)"


def _event_storage_failed(turn: Turn) -> TurnEvent:
    return event_error(code="storage_failed", message=STORAGE_FAILED_MESSAGE, session_id=turn.session_id,
                       turn_id=turn.id, retryable=True)


def _predecessors_pending(turn: Turn) -> int:
    """How many earlier turns of the session are still unanswered; abandoned ones are failed."""
    if turn.seq <= 1:
        return 0  # the first turn of a session has nothing to wait for
    earlier = Turn.objects.filter(session_id=turn.session_id, seq__lt=turn.seq).exclude(status__in=Turn.FINISHED)
    pending = earlier.count()
    if not pending:
        return 0
    stale_before = timezone.now() - timezone.timedelta(seconds=settings.RUNTIME_TURN_STALE_SECONDS)
    abandoned = _turns_abandon(earlier.filter(updated_at__lt=stale_before))
    if not abandoned:
        return pending
    logger.warning("session %s: %d abandoned turn(s) marked failed", turn.session_id, abandoned)
    return earlier.count()


def _turns_abandon(stale) -> int:
    """Mark unfinished turns whose process stopped failed/`abandoned`; how many were. No turn_finished
    for these (their process is gone): the overview's roll-up learns here that a closed day's turns
    changed (the roll-up leaves abandoned turns out of its "unfinished")."""
    from mejai.overview import days_changed

    created = list(stale.values_list("created_at", flat=True))
    abandoned = stale.update(
        status=Turn.Status.FAILED, error_code="abandoned", error="The process answering this turn stopped."
    )
    if abandoned:
        days_changed(created=created)
    return abandoned


def _turn_finished_or_abandoned(turn_id) -> bool:
    """Whether a turn someone else claimed is finished; one left unfinished for
    RUNTIME_TURN_STALE_SECONDS (its process stopped, or its request vanished right after the hot
    path stored it claimed) is marked failed/abandoned, as a predecessor would be."""
    if _turn_reload(turn_id).is_finished:
        return True
    stale_before = timezone.now() - timezone.timedelta(seconds=settings.RUNTIME_TURN_STALE_SECONDS)
    return bool(_turns_abandon(
        Turn.objects.filter(pk=turn_id, updated_at__lt=stale_before).exclude(status__in=Turn.FINISHED)))


async def _wait_until(predicate, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while await sync_to_async(predicate)():
        if time.monotonic() > deadline:
            raise TurnOrderTimeout()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def _turn_reload(turn_id) -> Turn:
    return Turn.objects.select_related("session", "session__agent", "session__organization", "session__end_user").get(
        pk=turn_id
    )


def turn_replay_events(turn: Turn) -> list[TurnEvent]:
    """The one replay of a stored, finished turn: `start` (replayed) then `message` or `error`."""
    events = [event_start(session_id=turn.session_id, turn_id=turn.id, seq=turn.seq, replayed=True)]
    if turn.status == Turn.Status.COMPLETED:
        events.append(event_message(turn_payload(turn)))
    else:
        events.append(
            event_error(
                code=turn.error_code or "turn_failed",
                message=turn.error or "This message was not answered.",
                session_id=turn.session_id,
                turn_id=turn.id,
                retryable=False,
            )
        )
    return events


# --- the runtime API's own callers ------------------------------------------------------

def api_chat_prepare(*, organization: Organization, data: dict) -> dict:
    """Resolve agent, session and end user of a runtime API call (`POST /api/runtime/chat`); the
    kwargs for turn_start. `data`: message, session_id?, new_session?, client_message_id?, external_id?, agent?,
    context?, metadata?. Without session_id, an external_id continues that person's open API session with
    the agent (RUNTIME_API_SESSION_IDLE_MINUTES). ApiError 404 for a session or agent that is not the organization's."""
    session = None
    if data.get("session_id"):
        session = selectors.session_get_for_org(organization=organization, session_id=data["session_id"])
    # A session keeps its agent; the lookup only matters when it can fail (a named or inactive agent).
    if session is None or data.get("agent") or not session.agent.is_active:
        agent = selectors.agent_for_org(organization=organization, name=data.get("agent") or None)
    end_user = None
    external_id = (data.get("external_id") or "").strip()
    if external_id:
        # The caller holds an API key: its external id is a verified identity.
        end_user = end_user_resolve(organization=organization, kind="external_id", value=external_id, verified=True)
    if session is not None:
        agent = session.agent
        if end_user is not None and session.end_user_id not in (None, end_user.pk):
            raise ApiError("session_not_found", "Session not found.", 404, field="session_id")
    elif end_user is not None and not data.get("new_session"):
        # Multi-turn by design (docs/runtime.md): the person's open conversation with this agent continues.
        session = selectors.session_open_for_end_user(
            organization=organization, agent=agent, channel=Channel.API, end_user=end_user,
            idle_minutes=settings.RUNTIME_API_SESSION_IDLE_MINUTES)
    metadata = {k: v for k, v in (data.get("metadata") or {}).items() if isinstance(k, str)}
    locale = (data.get("context") or {}).get("locale")
    if isinstance(locale, str) and locale.strip():
        metadata["locale"] = locale.strip()[:16]  # the session's language, e.g. for command replies
    return dict(
        organization=organization,
        agent=agent,
        channel=Channel.API,
        text=data["message"],
        session=session,
        end_user=end_user,
        client_message_id=data.get("client_message_id") or "",
        idempotency_scope=f"external:{external_id}",
        session_metadata={**metadata, "external_id": external_id} if external_id else metadata,
    )


def api_chat_start(*, organization: Organization, data: dict) -> tuple[Turn, bool]:
    """Resolve and store a runtime API message in one thread hop: (turn, created).

    On PostgreSQL a call without external_id takes the hot path (runtime/turnstore.py: one
    statement, agent and prompt from the per-process cache) and returns the turn already claimed,
    with what turn_answer_stream needs to start the model request without another read."""
    if turnstore.fast_path_available() and not (data.get("external_id") or "").strip():
        started = _api_chat_start_fast(organization=organization, data=data)
        if started is not None:
            return started
    return turn_start(**api_chat_prepare(organization=organization, data=data))


def _api_chat_start_fast(*, organization: Organization, data: dict) -> tuple[Turn, bool] | None:
    """The hot path of api_chat_start (anonymous caller: no external_id); None when a rarer case
    needs the ORM path's exact order of checks (an agent that cannot be resolved)."""
    text = user_text_validate(data["message"])
    cmid = _client_message_id_clean(data.get("client_message_id") or "")
    session_id = data.get("session_id") or None
    if session_id is not None and not isinstance(session_id, uuid.UUID):
        try:
            session_id = uuid.UUID(str(session_id))
        except ValueError:
            return None
    try:
        agent = selectors.agent_for_org_cached(organization=organization, name=data.get("agent") or None)
    except ApiError:
        return None  # the ORM path raises the right error in the right order (session first)
    scope = "external:"
    keys = []
    if cmid:
        keys = [idempotency_key_make(organization_id=organization.pk, channel=Channel.API, scope=scope,
                                     client_message_id=cmid)]
        if session_id is not None:
            keys.insert(0, idempotency_key_make(organization_id=organization.pk, channel=Channel.API,
                                                scope=f"{scope}|session:{session_id}", client_message_id=cmid))
    metadata = {k: v for k, v in (data.get("metadata") or {}).items() if isinstance(k, str)}
    locale = (data.get("context") or {}).get("locale")
    if isinstance(locale, str) and locale.strip():
        metadata["locale"] = locale.strip()[:16]
    try:
        stored, existing_id = turnstore.turn_store_fast(
            organization=organization, agent=agent, channel=Channel.API, text=text, session_id=session_id,
            client_message_id=cmid, keys=keys, session_metadata=metadata)
    except turnstore.SessionNotFound:
        raise ApiError("session_not_found", "Session not found.", 404, field="session_id") from None
    except IntegrityError:
        # A retry racing this one stored the message first (unique idempotency_key): replay it.
        existing_id = Turn.objects.filter(idempotency_key=keys[0]).values_list("pk", flat=True).first() if keys else None
        if existing_id is None:
            raise
        stored = None
    if stored is None:
        session = None
        if session_id is not None:
            session = selectors.session_get_for_org(organization=organization, session_id=session_id)
        existing = Turn.objects.select_related("session").get(pk=existing_id)
        return _idempotent_replay(existing, session), False
    turn = stored.turn
    session = turn.session
    if session_id is not None:
        session_agent = agent if agent.pk == session.agent_id else selectors.agent_get_cached(
            organization_id=organization.pk, agent_id=session.agent_id)
        session.agent = session_agent if session_agent is not None else Agent.objects.get(pk=session.agent_id)
        if session.end_user_id is not None:
            session.end_user  # noqa: B018 - loaded now (this thread), not by the async answer
    turn._hot_start = stored  # read once by turn_answer_stream
    return turn, True


# --- answering -------------------------------------------------------------------------

async def turn_answer_stream(*, turn: Turn, page: dict | None = None) -> AsyncIterator[TurnEvent]:
    """Answer a stored turn, yielding start, delta…, then message or error."""
    hot: turnstore.StoredTurn | None = getattr(turn, "_hot_start", None)
    if hot is None or not hot.claimed:
        async for event in _turn_answer_stream(turn=turn, page=page):
            yield event
        return
    settled = False
    try:
        async for event in _turn_answer_stream(turn=turn, page=page):
            settled = event.type in ("message", "error")  # the outcome is stored before it is sent
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        # Stored claimed by this request (runtime/turnstore.py): a client that left before the
        # answer began (predecessor check, context) must not leave it `streaming`.
        if not settled:
            await sync_to_async(released(turn_interrupt_unanswered))(turn.id)
        raise


async def _turn_answer_stream(*, turn: Turn, page: dict | None = None) -> AsyncIterator[TurnEvent]:
    started = time.monotonic()
    hot: turnstore.StoredTurn | None = getattr(turn, "_hot_start", None)
    if hot is not None and hot.claimed:
        # Stored by the hot path already claimed, with its predecessors counted (runtime/turnstore.py).
        turn._hot_start = None
        claimed = True
        pending = hot.pending
        if pending is None:
            pending = await sync_to_async(_predecessors_pending)(turn)
            hot.history = None
        opened = turn if pending == 0 else None
    else:
        hot = None
        claimed, opened = await sync_to_async(_turn_open)(turn)
    if not claimed:
        # A retry of a turn that is answered, or being answered, elsewhere: wait and replay it.
        try:
            await _wait_until(lambda: not _turn_finished_or_abandoned(turn.id), timeout=settings.RUNTIME_ORDER_WAIT_SECONDS)
        except TurnOrderTimeout:
            yield event_error(code="turn_in_progress", message="This message is still being answered.",
                              session_id=turn.session_id, turn_id=turn.id, retryable=True)
            return
        for event in turn_replay_events(await sync_to_async(_turn_reload)(turn.id)):
            yield event
        return

    if opened is not None:
        turn = opened
    else:
        hot = None  # after a wait the history is read again
        try:
            await _wait_until(lambda: _predecessors_pending(turn) > 0, timeout=settings.RUNTIME_ORDER_WAIT_SECONDS)
        except TurnOrderTimeout:
            await sync_to_async(_turn_finish)(turn.id, status=Turn.Status.FAILED, error_code="order_timeout",
                                              error="An earlier message of this conversation is still being answered.")
            yield event_error(code="order_timeout",
                              message="An earlier message of this conversation is still being answered.",
                              session_id=turn.session_id, turn_id=turn.id, retryable=True)
            return
        except asyncio.CancelledError:
            await sync_to_async(released(_turn_finish))(turn.id, status=Turn.Status.INTERRUPTED,
                                                        error_code="client_disconnected")
            raise
        turn = await sync_to_async(_turn_begin)(turn.id)
    yield event_start(session_id=turn.session_id, turn_id=turn.id, seq=turn.seq)

    matched = commands.command_match(turn.user_text, channel=turn.session.channel)
    if matched:
        async for event in _answer_command(turn, *matched, started=started):
            yield event
        return
    async for event in _answer_llm(turn, page or {}, started=started,
                                   history=hot.history if hot is not None else None):
        yield event


async def _answer_command(turn: Turn, command: commands.Command, args: str, *, started: float):
    session = turn.session
    ctx = commands.CommandContext(
        organization=session.organization, session=session, turn=turn, end_user=session.end_user,
        name=command.name, args=args, text=turn.user_text, channel=session.channel,
    )
    try:
        reply = await sync_to_async(command.handler)(ctx)
    except ApiError as exc:
        reply = commands.CommandReply(exc.message)
    except Exception:
        logger.exception("command /%s failed", command.name)
        finished = await sync_to_async(_turn_finish)(
            turn.id, loaded=turn, status=Turn.Status.FAILED, error_code="command_failed",
            error="The command failed.", handled_by=f"command:{command.name}",
        )
        yield event_error(code="command_failed", message="명령을 처리하지 못했어요. (The command failed.)",
                          session_id=finished.session_id, turn_id=finished.id)
        return
    payload = {
        "quick_replies": reply.quick_replies,
        "response_schema": reply.response_schema,
        "render_plan": _render_plan(reply.message, reply.quick_replies, reply.response_schema),
    }
    yield event_delta(turn_id=turn.id, text=reply.message, index=0)
    finished = await _turn_finish_or_fail(
        turn, status=Turn.Status.COMPLETED, reply_text=reply.message, payload=payload,
        handled_by=f"command:{command.name}", latency_ms=int((time.monotonic() - started) * 1000),
    )
    if finished is None:
        yield _event_storage_failed(turn)
        return
    yield event_message(turn_payload(finished))


def _context_build_released(*, session: Session, turn: Turn, page: dict, history=None):
    """Build the model's context, then give the database connection back to the pool: the model
    call that follows can take seconds, and a connection held through it would cap the turns a
    process answers at once at the pool's size. (Pooled PostgreSQL only, outside transactions.)"""
    context = context_build(session=session, turn=turn, page=page, history=history)
    if connection.settings_dict.get("OPTIONS", {}).get("pool"):
        db_release()
    return context


async def _answer_llm(turn: Turn, page: dict, *, started: float, history=None):
    session = turn.session
    agent = session.agent
    try:
        context = await sync_to_async(_context_build_released)(session=session, turn=turn, page=page, history=history)
    except asyncio.CancelledError:
        # The client left before the model was asked: the claimed turn must not stay `streaming`.
        await sync_to_async(released(turn_interrupt_unanswered))(turn.id)
        raise
    provider = provider_get()
    tools_offered = agent.tools_enabled and provider.name != "offline"
    channel_tools = tools_for(session.channel, session) if tools_offered else []
    request = LLMRequest(
        messages=context.messages,
        model=agent.model_name,
        temperature=agent.temperature,
        max_tokens=agent.max_tokens,
        tools=[*OUTPUT_TOOLS, *(t.spec() for t in channel_tools)] if tools_offered else None,
        profile=context.grounding.profile,
        memories=context.grounding.memories,
        knowledge=context.grounding.knowledge,
        user_text=turn.user_text,
        options=agent.llm_options or {},
    )
    model_label = agent.model_name if provider.name != "offline" else "offline"
    parts: list[str] = []
    calls: list[ToolCall] = []
    usage: Usage | None = None
    end: StreamEnd | None = None
    ttft_ms: int | None = None
    common = {"model": model_label, "prompt_version": context.prompt_version, "handled_by": "llm"}

    stream = provider.stream(request)
    try:
        async for item in stream:
            if isinstance(item, TextDelta):
                if ttft_ms is None:
                    ttft_ms = int((time.monotonic() - started) * 1000)
                parts.append(item.text)
                yield event_delta(turn_id=turn.id, text=item.text, index=len(parts) - 1)
            elif isinstance(item, ToolCall):
                calls.append(item)
            elif isinstance(item, Usage):
                usage = item
            elif isinstance(item, StreamEnd):
                end = item
        if end is None:
            raise LLMError("llm_stream_broken", "The language model's answer was cut off.")
    except LLMError as exc:
        await stream.aclose()
        diagnostics = {k: v for k, v in (("upstream_error", exc.upstream), ("warnings", exc.warnings)) if v}
        failed = await _turn_finish_or_fail(
            turn, status=Turn.Status.FAILED, reply_text="".join(parts), error_code=exc.code,
            error=exc.message, diagnostics=diagnostics,
            ttft_ms=ttft_ms, latency_ms=int((time.monotonic() - started) * 1000), **common,
        )
        yield event_error(code=exc.code, message=exc.message, session_id=session.id, turn_id=turn.id,
                          retryable=exc.retryable or failed is None)
        return
    except Exception:
        # A fault of ours while reading the answer: the turn still closes, and so does the stream.
        logger.exception("turn %s: answering failed", turn.id)
        await stream.aclose()
        await _turn_finish_or_fail(
            turn, status=Turn.Status.FAILED, reply_text="".join(parts), error_code="answer_failed",
            error=ANSWER_FAILED_MESSAGE, ttft_ms=ttft_ms, latency_ms=int((time.monotonic() - started) * 1000), **common,
        )
        yield event_error(code="answer_failed", message=ANSWER_FAILED_MESSAGE, session_id=session.id, turn_id=turn.id,
                          retryable=True)
        return
    except (asyncio.CancelledError, GeneratorExit):
        # The client left: close the upstream stream, keep what was generated, mark the turn.
        await stream.aclose()
        # The connection goes back in the same thread call (released): nothing after this is sure to run.
        await sync_to_async(released(_turn_finish))(
            turn.id, loaded=turn, status=Turn.Status.INTERRUPTED, reply_text="".join(parts),
            error_code="client_disconnected",
            ttft_ms=ttft_ms, latency_ms=int((time.monotonic() - started) * 1000), **common,
        )
        raise
    finally:
        await stream.aclose()

    by_name = {t.name: t for t in channel_tools}
    tool_texts, tool_records, tool_warnings = [], [], []
    for call in [c for c in calls if c.name in by_name]:
        text, record, warning = await sync_to_async(_channel_tool_run)(by_name[call.name], turn, call.arguments)
        if text:
            tool_texts.append(text)
        tool_records.append(record)
        if warning:
            tool_warnings.append(warning)
    answer = answer_assemble(end=end, calls=[c for c in calls if c.name not in by_name],
                             extra_form_fields=session.agent.extra_form_fields, tool_texts=tool_texts,
                             tool_records=tool_records, tool_warnings=tool_warnings)
    usage_fields = {"tokens_in": usage.tokens_in if usage else None, "tokens_out": usage.tokens_out if usage else None,
                    "ttft_ms": ttft_ms, "latency_ms": int((time.monotonic() - started) * 1000)}
    if answer.error_code:
        # No visible text and no usable tool call: a failure the client can retry, never an empty "completed".
        await _turn_finish_or_fail(
            turn, status=Turn.Status.FAILED, reply_text="", error_code=answer.error_code, error=answer.error_message,
            diagnostics=answer.diagnostics, **usage_fields, **common,
        )
        yield event_error(code=answer.error_code, message=answer.error_message, session_id=session.id,
                          turn_id=turn.id, retryable=True)
        return
    finished = await _turn_finish_or_fail(
        turn, status=Turn.Status.COMPLETED, reply_text=answer.message, payload=answer.payload,
        diagnostics=answer.diagnostics, **usage_fields, **common,
    )
    if finished is None:
        yield _event_storage_failed(turn)
        return
    # The tools' confirmations follow the streamed text, sent once the turn is stored (a client
    # leaving here cannot leave it half-finished).
    for text in tool_texts:
        yield event_delta(turn_id=turn.id, text=("\n\n" if parts else "") + text, index=len(parts))
        parts.append(text)
    yield event_message(turn_payload(finished))


def _channel_tool_run(tool: ModelTool, turn: Turn, arguments: dict) -> tuple[str, dict, dict | None]:
    """Run a channel tool's handler: (confirmation text, record for diagnostics, warning or None).
    Unusable arguments or a failing handler become a warning on the turn, never a failed answer."""
    try:
        result = tool.handler(ToolCallContext(turn=turn, session=turn.session, arguments=arguments))
    except ToolArgumentsError as exc:
        detail = str(exc)[:200]
        return "", {"tool": tool.name, "status": "unusable", "detail": detail}, {
            "code": "tool_call_unusable", "tool": tool.name, "detail": detail}
    except Exception:
        logger.exception("turn %s: tool %s failed", turn.id, tool.name)
        return "", {"tool": tool.name, "status": "failed"}, {"code": "tool_call_failed", "tool": tool.name}
    return result.message, {"tool": tool.name, "status": "ok", **result.record}, None


async def turn_stream(*, page: dict | None = None, **start_kwargs) -> AsyncIterator[TurnEvent]:
    """Store the message and answer it, streaming events. Bad input raises ApiError before any event."""
    turn, _created = await sync_to_async(turn_start)(**start_kwargs)
    async for event in turn_answer_stream(turn=turn, page=page):
        yield event


async def outcome_gather(events: AsyncIterator[TurnEvent]) -> TurnOutcome:
    turn_id = session_id = None
    async for event in events:
        if event.type == "start":
            turn_id, session_id = event.data["turn_id"], event.data["session_id"]
        elif event.type == "message":
            return TurnOutcome(event.data["turn_id"], event.data["session_id"], event.data, None)
        elif event.type == "error":
            return TurnOutcome(event.data.get("turn_id") or turn_id, event.data.get("session_id") or session_id, None,
                               event.data)
    return TurnOutcome(turn_id, session_id, None, {"code": "no_answer", "message": "No answer was produced."})


async def turn_respond(*, page: dict | None = None, **start_kwargs) -> TurnOutcome:
    return await outcome_gather(turn_stream(page=page, **start_kwargs))


def turn_run(*, page: dict | None = None, **start_kwargs) -> TurnOutcome:
    """Synchronous form of turn_respond, for workers and management commands."""
    return async_to_sync(turn_respond)(page=page, **start_kwargs)


def turn_answer(*, turn: Turn, page: dict | None = None) -> TurnOutcome:
    """Synchronously answer a turn stored earlier (e.g. by a webhook that acknowledged at once)."""
    return async_to_sync(outcome_gather)(turn_answer_stream(turn=turn, page=page))
