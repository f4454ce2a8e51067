"""Kakao channel services: receive a skill request, answer it (callback or synchronously), deliver callbacks.

    bot_authenticate        the bot named by bot.id, if the request carries its secret header (constant time)
    skill_receive           user, session, name flows; store the turn + callback task in one transaction
    skill_answer_sync       a bounded synchronous answer (no callbackUrl, tester, broker down)
    callback_deliver        the worker: answer the turn, wait the settle time, POST exactly once
    callback_tasks_sweep    expire abandoned tasks; fail posts whose outcome is unknown
    callback_task_retry     operator retry, only while the token is still usable

See docs/kakao.md for the decisions behind each rule.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from endusers.rules import name_extract, name_valid
from endusers.services import identity_resolve, profile_name_set
from kakao import conf, store
from kakao.clients.callback import CallbackResult, Outcome, callback_post
from kakao.models import CallbackTask, KakaoBot, KakaoEvent, KakaoUser
from kakao.parsing import SkillRequest, bot_id_normalize
from kakao.responses import acknowledgement, response_build
from kakao.security import CallbackUrl, CallbackUrlRejected, callback_url_check
from mejai.concurrency import db_release
from mejai.errors import ApiError
from runtime import background, commands, signals
from runtime import services as runtime
from runtime.models import Channel, Session, Turn
from runtime.text import user_text_validate

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("kakao.security")

APOLOGY_TEXT = "죄송해요, 지금은 답변을 드리기 어려워요. 잠시 후 다시 말씀해 주세요."
BROKER_DOWN_TEXT = "죄송해요, 지금 요청이 많아 답변을 드리지 못했어요. 메시지는 잘 받았으니 잠시 후 다시 말씀해 주세요."
BUSY_TEXT = "죄송해요, 지금 요청이 많아 메시지를 받지 못했어요. 잠시 후 다시 시도해 주세요. (Sorry, we are busy right now; please try again in a moment.)"
STILL_WORKING_TEXT = "답변을 준비하는 데 시간이 조금 더 걸리고 있어요. 잠시 후 아래 '답변 보기'를 눌러 주세요."
HELD_ANSWER_COMMAND = "/답변"
STILL_WORKING_REPLIES = [{"label": "답변 보기", "message": HELD_ANSWER_COMMAND}]
CANCEL_WORDS = {"취소", "그만", "cancel", "/취소"}
NAME_CHANGE_TRIGGERS = {
    "다른 이름", "다른이름", "이름 바꿔", "이름바꿔", "이름 바꿔줘", "이름 바꿔 줘", "이름 바꿔주세요", "이름 바꿔 주세요",
    "이름 바꾸기", "이름 변경", "이름변경", "이름 변경할래", "이름 변경해줘", "이름 변경해 줘", "이름 변경하기",
    "다른 이름으로 불러줘", "다른 이름으로 불러 줘", "change my name", "change name",
}
NAME_COMMAND = "이름"
HELD_WINDOW = timedelta(hours=24)
POST_GRACE_SECONDS = 5.0


# --- bots ---------------------------------------------------------------------------------

_bots_cache: dict = {"at": 0.0, "checked": 0.0, "stamp": None, "bots": None}
_bots_lock = threading.Lock()
BOTS_CACHE_SECONDS = 30.0  # the longest a change that fired no signal (a queryset update) stays unseen
BOTS_STAMP_SECONDS = 1.0  # how often a process asks the shared cache whether any process changed a bot
BOTS_STAMP_KEY = "kakao:bots:stamp"


def _bots_stamp():
    """The shared change stamp (Django's cache: Redis across processes; None when unreachable)."""
    from django.core.cache import cache

    try:
        return cache.get(BOTS_STAMP_KEY)
    except Exception:
        logger.warning("kakao: bots change stamp unreadable; the cache expires by age only", exc_info=True)
        return None


def bots_cache_clear(*, everywhere: bool = False) -> None:
    """Forget this process's bots; with `everywhere`, every process's within BOTS_STAMP_SECONDS
    (a new stamp in the shared cache — what saving or deleting a bot, agent or organization does)."""
    with _bots_lock:
        _bots_cache["bots"] = None
    if everywhere:
        from django.core.cache import cache

        try:
            cache.set(BOTS_STAMP_KEY, uuid.uuid4().hex, None)
        except Exception:
            logger.warning("kakao: bots change stamp not written; other processes see it within %ss",
                           BOTS_CACHE_SECONDS, exc_info=True)


def bots_active() -> list[KakaoBot]:
    """Active bots with organization and agent, cached per process.

    No database on the request path: the list is reloaded when another process changed a bot (the shared
    stamp, read at most once a second) or after BOTS_CACHE_SECONDS.
    """
    now = time.monotonic()
    with _bots_lock:
        bots, at, checked, stamp = (_bots_cache[k] for k in ("bots", "at", "checked", "stamp"))
    if bots is not None and now - at < BOTS_CACHE_SECONDS:
        if now - checked < BOTS_STAMP_SECONDS:
            return bots
        current = _bots_stamp()
        if current == stamp:
            with _bots_lock:
                _bots_cache["checked"] = now
            return bots
    stamp = _bots_stamp()
    bots = list(KakaoBot.objects.select_related("organization", "agent").filter(is_active=True))
    with _bots_lock:
        _bots_cache.update(bots=bots, at=now, checked=now, stamp=stamp)
    return bots


SECRET_REFUSED = "스킬 비밀 헤더가 맞지 않거나 알 수 없는 봇입니다. (The skill secret is wrong or the bot is unknown.)"


def bot_authenticate(*, headers, bot_id: str) -> KakaoBot:
    """The active bot named by the request's bot.id, when the request carries that bot's secret header.

    The bot is chosen by bot.id first and only its own header is compared (constant time), so no
    bot's header configuration can capture another tenant's requests. 401 when the header is
    missing; 403 (one message) for an unknown or inactive bot, a wrong secret, or a bot configured
    with a standard header name.
    """
    from kakao.security import secret_header_name_problem, secret_matches

    wanted = bot_id_normalize(bot_id)
    bot = next((b for b in bots_active() if b.bot_id == wanted), None)
    if bot is None or secret_header_name_problem(bot.secret_header_name):
        raise ApiError("forbidden", SECRET_REFUSED, 403)
    value = headers.get(bot.secret_header_name)
    if value is None:
        raise ApiError("unauthenticated", "스킬 비밀 헤더가 없습니다. (The skill secret header is missing.)", 401)
    if not secret_matches(value, bot.secret_header_value):
        raise ApiError("forbidden", SECRET_REFUSED, 403)
    return bot


# --- events -------------------------------------------------------------------------------

def event_log(*, bot: KakaoBot, kind: str, kakao_user: KakaoUser | None = None, session_id=None,
              task: CallbackTask | None = None, **detail) -> None:
    KakaoEvent.objects.create(
        organization_id=bot.organization_id, bot=bot, kakao_user=kakao_user, session_id=session_id, task=task,
        kind=kind, detail=detail,
    )


# --- users and sessions ----------------------------------------------------------------------

def kakao_user_resolve(*, bot: KakaoBot, skill: SkillRequest) -> KakaoUser:
    """The Kakao user of this bot, created with a verified `kakao` identity on first contact."""
    user = KakaoUser.objects.select_related("end_user", "session").filter(bot=bot, user_key=skill.user_id).first()
    now = timezone.now()
    if user is None:
        end_user = identity_resolve(organization=bot.organization, kind="kakao", value=skill.user_id, verified=True)
        try:
            with transaction.atomic():
                user = KakaoUser.objects.create(
                    bot=bot, user_key=skill.user_id, end_user=end_user, plusfriend_user_key=skill.plusfriend_user_key,
                    app_user_id=skill.app_user_id, is_friend=skill.is_friend,
                )
        except IntegrityError:
            user = KakaoUser.objects.select_related("end_user", "session").get(bot=bot, user_key=skill.user_id)
        return user
    updates = {}
    if user.end_user.merged_into_id:
        # The end-user app merged this person into another: follow it.
        user.end_user = identity_resolve(organization=bot.organization, kind="kakao", value=skill.user_id, verified=True)
        updates["end_user"] = user.end_user
    for name in ("plusfriend_user_key", "app_user_id", "is_friend"):
        value = getattr(skill, name)
        if value and getattr(user, name) != value:
            setattr(user, name, value)
            updates[name] = value
    if (now - user.last_seen_at).total_seconds() > 60:
        updates["last_seen_at"] = now
    if updates:
        KakaoUser.objects.filter(pk=user.pk).update(**updates)
    return user


def kakao_session_current(*, bot: KakaoBot, kakao_user: KakaoUser) -> Session | None:
    """The user's conversation, unless it has been idle longer than the bot's session timeout."""
    session = kakao_user.session
    if session is None or session.status != Session.Status.OPEN or session.agent_id != bot.agent_id:
        return None
    if timezone.now() - session.last_activity_at > timedelta(minutes=bot.session_timeout_minutes):
        return None
    return session


# --- name capture and the name-change mode ----------------------------------------------------

def _mode_active(kakao_user: KakaoUser) -> bool:
    return kakao_user.mode == KakaoUser.Mode.NAME_CHANGE and (
        kakao_user.mode_expires_at is None or kakao_user.mode_expires_at > timezone.now()
    )


def _mode_set(kakao_user: KakaoUser, on: bool) -> None:
    mode = KakaoUser.Mode.NAME_CHANGE if on else KakaoUser.Mode.NONE
    expires = timezone.now() + timedelta(minutes=conf.name_mode_minutes()) if on else None
    KakaoUser.objects.filter(pk=kakao_user.pk).update(mode=mode, mode_expires_at=expires)
    kakao_user.mode, kakao_user.mode_expires_at = mode, expires


def name_flow_involved(text: str) -> bool:
    """Could name_flow_apply do anything with this text for a user not in the name-change mode?

    True for the `/이름` command, a name-change trigger and a stated valid name. Decided from the
    text alone (no database), so the acknowledgement's one-statement path knows when to step aside.
    """
    stripped = " ".join(text.split())
    matched = commands.command_match(stripped, channel=Channel.KAKAO)
    if matched and matched[0].name == NAME_COMMAND:
        return True
    if stripped.lower().rstrip(".!?~ ") in NAME_CHANGE_TRIGGERS:
        return True
    name = name_extract(stripped)
    return bool(name and name_valid(name))


def name_flow_apply(*, bot: KakaoBot, kakao_user: KakaoUser, text: str) -> str:
    """Name capture and the name-change mode, decided when the message arrives.

    Returns the text the pipeline answers: name-change input becomes the `/이름` command
    ("이름 바꿔" → "/이름", "홍길동" in the mode → "/이름 홍길동", "취소" → "/이름 취소"), so the
    reply comes from the command without the LLM. A stated name ("내 이름은 민수야") is stored at
    once and the message goes to the LLM, which greets the person by name.
    """
    stripped = " ".join(text.split())
    lowered = stripped.lower()
    matched = commands.command_match(stripped, channel=Channel.KAKAO)
    if matched and matched[0].name == NAME_COMMAND:
        args = matched[1].strip()
        if not args:
            _mode_set(kakao_user, True)
            event_log(bot=bot, kind=KakaoEvent.Kind.NAME_CHANGE_MODE, kakao_user=kakao_user)
        elif args in CANCEL_WORDS:
            if _mode_active(kakao_user):
                event_log(bot=bot, kind=KakaoEvent.Kind.NAME_CHANGE_CANCELLED, kakao_user=kakao_user)
            _mode_set(kakao_user, False)
        else:
            _mode_set(kakao_user, not name_valid(name_extract(args) or args))
        return text
    if _mode_active(kakao_user):
        if lowered in CANCEL_WORDS:
            _mode_set(kakao_user, False)
            event_log(bot=bot, kind=KakaoEvent.Kind.NAME_CHANGE_CANCELLED, kakao_user=kakao_user)
            return f"/{NAME_COMMAND} 취소"
        if stripped[:1] in commands.COMMAND_PREFIXES:
            return text  # another command: the mode waits
        name = name_extract(stripped) or stripped
        if name_valid(name):
            _mode_set(kakao_user, False)
        return f"/{NAME_COMMAND} {name}"
    if lowered.rstrip(".!?~ ") in NAME_CHANGE_TRIGGERS:
        _mode_set(kakao_user, True)
        event_log(bot=bot, kind=KakaoEvent.Kind.NAME_CHANGE_MODE, kakao_user=kakao_user, trigger=stripped)
        return f"/{NAME_COMMAND}"
    name = name_extract(stripped)
    if name and name_valid(name) and kakao_user.end_user.display_name != name:
        try:
            profile_name_set(end_user=kakao_user.end_user, name=name)
        except ApiError:
            return text  # not a name after all: the message is answered as it is
        event_log(bot=bot, kind=KakaoEvent.Kind.NAME_SET, kakao_user=kakao_user, name=name, source="stated")
    return text


def name_command(ctx: commands.CommandContext) -> commands.CommandReply:
    """Kakao's `/이름`: with no name it asks for one (the name-change mode of name_flow_apply waits
    for the answer) and offers a cancel button; setting the name is the endusers command's."""
    from endusers.commands import name_set

    args = ctx.args.strip()
    cancel = [{"label": "취소", "message": "취소"}]
    if args in CANCEL_WORDS:
        return name_set(ctx)
    if not args:
        return commands.CommandReply(
            "어떤 이름으로 불러 드릴까요? 새 이름을 보내 주세요. (한글·영문·숫자 1–20자)\n그만두려면 '취소'를 보내 주세요.",
            quick_replies=cancel,
        )
    if ctx.end_user is None or not name_valid(name_extract(args) or args):
        return commands.CommandReply(
            "이름은 한글·영문·숫자와 ·, -, _ 로 1–20자까지 쓸 수 있어요. 다시 보내 주세요.", quick_replies=cancel,
        )
    reply = name_set(ctx)
    user = KakaoUser.objects.select_related("bot").filter(end_user=ctx.end_user, session=ctx.session).first()
    if user is not None:
        event_log(bot=user.bot, kind=KakaoEvent.Kind.NAME_SET, kakao_user=user, session_id=ctx.session.pk,
                  name=name_extract(args) or args, source="command")
    return reply


def held_answer_command(ctx: commands.CommandContext) -> commands.CommandReply:
    """/답변: the user asks for an answer that was not ready in time; the delivery puts it first."""
    held = CallbackTask.objects.filter(
        kakao_user__end_user=ctx.end_user, status=CallbackTask.Status.HELD, received_at__gte=timezone.now() - HELD_WINDOW,
    ) if ctx.end_user is not None else CallbackTask.objects.none()
    if held.filter(turn__status=Turn.Status.COMPLETED).exists():
        return commands.CommandReply("더 궁금한 점이 있으면 편하게 말씀해 주세요.")
    if held.exclude(turn__status__in=Turn.FINISHED).exists():
        return commands.CommandReply("아직 답변을 준비하고 있어요. 잠시 후 다시 눌러 주세요.", quick_replies=STILL_WORKING_REPLIES)
    return commands.CommandReply("지금 전해 드릴 답변은 없어요. 궁금한 점을 말씀해 주세요.")


# --- receiving a skill request ---------------------------------------------------------------

@dataclass
class SkillAccepted:
    kind: str  # "callback": acknowledged, the worker answers; "sync": answer now; "apology": answer given
    bot: KakaoBot
    kakao_user: KakaoUser
    turn: Turn
    task: CallbackTask | None = None
    response: dict | None = None
    duplicate: bool = False


_producer_pool = None
_producer_lock = threading.Lock()


def _broker_url() -> str:
    from mejai.celery import app

    return app.conf.broker_url


def _broker_pool():
    """A small kombu pool whose connections fail fast: no long retry loop on the request path."""
    global _producer_pool
    with _producer_lock:
        if _producer_pool is None:
            from kombu import Connection

            from mejai.celery import app

            timeout = conf.enqueue_connect_timeout()
            options = {
                **(app.conf.broker_transport_options or {}),
                "max_retries": 0, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2,
                "socket_connect_timeout": timeout, "socket_timeout": max(1.0, timeout * 2),
            }
            _producer_pool = Connection(_broker_url(), transport_options=options, connect_timeout=timeout).Pool(
                limit=20
            )
        return _producer_pool


def callback_enqueue(*, task_id, announce: bool = False) -> None:
    """Queue the delivery job; raises when the broker cannot be reached.

    `announce`: the job sends runtime's `turn_stored` signal (end-user timeline) before answering —
    set by the one-statement acknowledgement, which leaves that work off the request path.
    """
    from kakao.tasks import callback_deliver_task

    args = (str(task_id), True) if announce else (str(task_id),)
    if settings.CELERY_IN_PROCESS:
        callback_deliver_task.apply_async(args)
        return
    with _broker_pool().acquire(block=True, timeout=1) as conn:
        callback_deliver_task.apply_async(args, connection=conn, retry=False)


def _acknowledge_stored(*, bot: KakaoBot, skill: SkillRequest) -> SkillAccepted | None:
    """The common case in one database round trip (kakao.store): a returning user's plain message with a
    usable callbackUrl, in their current conversation. None when the ORM path must decide (nothing written).
    """
    if skill.callback_url is None or skill.is_builder_test or not store.supported():
        return None
    if name_flow_involved(skill.utterance):
        return None
    try:
        callback = callback_url_check(skill.callback_url, allowed_hosts=bot.allowed_callback_hosts)
    except CallbackUrlRejected:
        return None  # the ORM path logs it and answers synchronously
    text = user_text_validate(skill.utterance)
    now = timezone.now()
    stored = store.acknowledgement_store(bot=bot, skill=skill, text=text, callback=callback, now=now)
    if stored is None:
        return None
    kakao_user = KakaoUser(pk=stored.kakao_user_id, bot=bot, user_key=skill.user_id,
                           end_user_id=stored.end_user_id, session_id=stored.session_id)
    turn = Turn(pk=stored.turn_id, session_id=stored.session_id, seq=stored.seq, author_id=stored.end_user_id,
                user_text=text, client_message_id=callback.token_hash, status=Turn.Status.PENDING, created_at=now)
    task = CallbackTask(pk=stored.task_id, organization_id=bot.organization_id, bot=bot, kakao_user=kakao_user,
                        turn=turn, mode=CallbackTask.Mode.CALLBACK, token_hash=callback.token_hash,
                        callback_url=callback.url, received_at=now)
    enqueue_error: list[BaseException] = []

    def enqueue():
        try:
            callback_enqueue(task_id=task.pk, announce=True)
        except Exception as exc:  # broker down: answered with the apology below
            enqueue_error.append(exc)

    # Queued once the statement is committed: at once in autocommit, at the end of a caller's transaction.
    transaction.on_commit(enqueue)
    if enqueue_error:
        # The message is stored; the timeline is written here since no job will; the user gets the apology.
        signals.turn_stored.send(sender=Turn, turn=Turn.objects.select_related("session").get(pk=turn.pk))
        return _broker_unreachable(bot=bot, kakao_user=kakao_user, turn=turn, task=task, error=enqueue_error[0])
    return SkillAccepted("callback", bot, kakao_user, turn, task, acknowledgement(bot.waiting_text))


def _broker_unreachable(*, bot: KakaoBot, kakao_user: KakaoUser, turn: Turn, task: CallbackTask,
                        error: BaseException) -> SkillAccepted:
    """The job could not be queued: mark the task, keep the turn as `stored`, apologise."""
    logger.error("kakao: broker unreachable, answering synchronously: %s", error)
    CallbackTask.objects.filter(pk=task.pk).update(
        status=CallbackTask.Status.FAILED, error_code="broker_unreachable", last_error=str(error)[:500],
        completed_at=timezone.now(),
    )
    runtime.turn_store_without_answer(turn_id=turn.pk, code="broker_unreachable",
                                      message="The job queue was unreachable.")
    event_log(bot=bot, kind=KakaoEvent.Kind.BROKER_UNREACHABLE, kakao_user=kakao_user, session_id=turn.session_id,
              task=task, error=str(error)[:300])
    return SkillAccepted("apology", bot, kakao_user, turn, task, response_build([BROKER_DOWN_TEXT]))


def skill_receive(*, bot: KakaoBot, skill: SkillRequest, session_metadata_extra: dict | None = None) -> SkillAccepted:
    """Store the user's message and decide how it is answered. Never calls the LLM.

    `session_metadata_extra` is added to a new session's metadata (the simulator's `preview`).

    With a usable callbackUrl the turn and its callback task are stored in one transaction and
    the job is queued on commit; the answer is the acknowledgement. Otherwise the caller answers
    synchronously (skill_answer_sync). A returning user's plain message in their current conversation
    is stored by one statement (kakao.store); everything else takes the ORM path below.
    """
    if session_metadata_extra is None:
        accepted = _acknowledge_stored(bot=bot, skill=skill)
        if accepted is not None:
            return accepted
    kakao_user = kakao_user_resolve(bot=bot, skill=skill)
    session = kakao_session_current(bot=bot, kakao_user=kakao_user)
    text = name_flow_apply(bot=bot, kakao_user=kakao_user, text=skill.utterance)

    callback: CallbackUrl | None = None
    if skill.callback_url is not None and not skill.is_builder_test:
        try:
            callback = callback_url_check(skill.callback_url, allowed_hosts=bot.allowed_callback_hosts)
        except CallbackUrlRejected as exc:
            security_logger.warning("kakao bot %s: callbackUrl rejected (%s); answering synchronously",
                                    bot.bot_id, exc.reason)
            event_log(bot=bot, kind=KakaoEvent.Kind.CALLBACK_URL_REJECTED, kakao_user=kakao_user,
                      reason=exc.reason, url_prefix=str(skill.callback_url)[:80])

    now = timezone.now()
    enqueue_error: list[BaseException] = []
    task = None
    duplicate = False
    if callback is not None and CallbackTask.objects.filter(token_hash=callback.token_hash).exclude(
        bot=bot, kakao_user=kakao_user
    ).exists():
        # A token is Kakao's for one request of one user of one bot: another bot or user replaying it is refused.
        raise ApiError("callback_token_reused", "이 콜백 토큰은 다른 요청에 이미 쓰였습니다. "
                       "(This callback token was already used by another request.)", 409)
    with transaction.atomic():
        turn, created = runtime.turn_start(
            organization=bot.organization, agent=bot.agent, channel=Channel.KAKAO, text=text, session=session,
            end_user=kakao_user.end_user, client_message_id=callback.token_hash if callback else "",
            idempotency_scope=f"bot:{bot.pk}",
            session_metadata={"kakao_bot_id": bot.bot_id, "kakao_user_key": skill.user_id,
                              "plusfriend_user_key": skill.plusfriend_user_key, **(session_metadata_extra or {})},
        )
        if turn.session_id != kakao_user.session_id:
            KakaoUser.objects.filter(pk=kakao_user.pk).update(session_id=turn.session_id)
            kakao_user.session_id = turn.session_id
            event_log(bot=bot, kind=KakaoEvent.Kind.CONVERSATION_START, kakao_user=kakao_user,
                      session_id=turn.session_id)
        if callback is not None:
            task = CallbackTask.objects.filter(token_hash=callback.token_hash).first() if not created else None
            if task is not None:
                duplicate = True  # the same callback token again: processed once
            else:
                task = CallbackTask.objects.create(
                    organization_id=bot.organization_id, bot=bot, kakao_user=kakao_user, turn=turn,
                    mode=CallbackTask.Mode.CALLBACK, token_hash=callback.token_hash, callback_url=callback.url,
                    received_at=now, not_before=now + timedelta(seconds=conf.callback_settle_seconds()),
                    deadline=now + timedelta(seconds=conf.callback_deadline_seconds()),
                )

                def enqueue(task_id=task.pk):
                    try:
                        callback_enqueue(task_id=task_id)
                    except Exception as exc:  # broker down: answered synchronously below
                        enqueue_error.append(exc)

                transaction.on_commit(enqueue)

    if task is None:
        if not created and turn.is_finished:
            return SkillAccepted("sync", bot, kakao_user, turn, duplicate=True)
        return SkillAccepted("sync", bot, kakao_user, turn)
    if duplicate:
        if task.error_code == "broker_unreachable":
            return SkillAccepted("apology", bot, kakao_user, turn, task, response_build([BROKER_DOWN_TEXT]), duplicate=True)
        return SkillAccepted("callback", bot, kakao_user, turn, task, acknowledgement(bot.waiting_text), duplicate=True)
    if enqueue_error:
        return _broker_unreachable(bot=bot, kakao_user=kakao_user, turn=turn, task=task, error=enqueue_error[0])
    return SkillAccepted("callback", bot, kakao_user, turn, task, acknowledgement(bot.waiting_text))


# --- composing answers -----------------------------------------------------------------------

def _held_for(kakao_user_id, *, exclude_pk=None) -> list[CallbackTask]:
    if kakao_user_id is None:
        return []
    since = timezone.now() - HELD_WINDOW
    held = (
        CallbackTask.objects.select_related("turn")
        .filter(kakao_user_id=kakao_user_id, status=CallbackTask.Status.HELD, received_at__gte=since)
        .exclude(pk=exclude_pk)
        .order_by("received_at")
    )
    ready = []
    for task in held:
        if task.turn.status == Turn.Status.COMPLETED:
            ready.append(task)
        elif task.turn.is_finished:
            # Its answer failed: nothing to hold any more.
            CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.HELD).update(
                status=CallbackTask.Status.FAILED, error_code="answer_failed", last_error=task.turn.error[:500],
            )
    return ready


def held_claim(*, kakao_user_id, carrier: CallbackTask | None, exclude_pk=None) -> list[CallbackTask]:
    """Held answers ready for this user, claimed for one delivery (undone by held_release)."""
    claimed = []
    for task in _held_for(kakao_user_id, exclude_pk=exclude_pk):
        if CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.HELD).update(
            status=CallbackTask.Status.COMPLETED, held_delivered_by=carrier, completed_at=timezone.now(),
        ):
            claimed.append(task)
    return claimed


def held_release(tasks: list[CallbackTask]) -> None:
    for task in tasks:
        CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.COMPLETED).update(
            status=CallbackTask.Status.HELD, held_delivered_by=None, completed_at=None,
        )


def answer_compose(*, outcome: runtime.TurnOutcome | None, held: list[CallbackTask]) -> tuple[dict, str]:
    """The Kakao body for a finished turn (held answers first), and its kind."""
    texts = [task.turn.reply_text for task in held]
    if outcome is not None and outcome.ok:
        texts.append(outcome.payload.get("message") or "")
        return response_build(texts, quick_replies=outcome.payload.get("quick_replies")), CallbackTask.Kind.ANSWER
    texts.append(APOLOGY_TEXT)
    return response_build(texts), CallbackTask.Kind.APOLOGY


# --- the synchronous path -------------------------------------------------------------------

def _sync_finish(accepted: SkillAccepted, outcome: runtime.TurnOutcome) -> dict:
    held = held_claim(kakao_user_id=accepted.kakao_user.pk, carrier=None)
    body, kind = answer_compose(outcome=outcome, held=held)
    if held:
        event_log(bot=accepted.bot, kind=KakaoEvent.Kind.HELD_DELIVERED, kakao_user=accepted.kakao_user,
                  session_id=accepted.turn.session_id, held=[str(t.pk) for t in held], via="sync")
    return body


def _sync_hold(accepted: SkillAccepted) -> dict:
    now = timezone.now()
    task = CallbackTask.objects.create(
        organization_id=accepted.bot.organization_id, bot=accepted.bot, kakao_user=accepted.kakao_user,
        turn=accepted.turn, mode=CallbackTask.Mode.SYNC, status=CallbackTask.Status.HELD, received_at=now,
        not_before=now, deadline=now, response_kind=CallbackTask.Kind.STILL_WORKING, error_code="sync_timeout",
    )
    event_log(bot=accepted.bot, kind=KakaoEvent.Kind.ANSWER_HELD, kakao_user=accepted.kakao_user,
              session_id=accepted.turn.session_id, task=task, via="sync")
    return response_build([STILL_WORKING_TEXT], quick_replies=STILL_WORKING_REPLIES)


async def skill_answer_sync(*, accepted: SkillAccepted) -> dict:
    """Answer within the synchronous budget; past it, say so and hold the answer for the next message."""
    if accepted.response is not None:
        return accepted.response
    # The answer runs in the background and finishes even when the budget is spent (then held).
    outcome = await background.aturn_answer_within(turn_id=accepted.turn.pk, seconds=conf.sync_answer_seconds())
    if outcome is None:
        return await sync_to_async(_sync_hold)(accepted)
    body = await sync_to_async(_sync_finish)(accepted, outcome)
    await sync_to_async(event_log)(
        bot=accepted.bot, kind=KakaoEvent.Kind.SYNC_ANSWER, kakao_user=accepted.kakao_user,
        session_id=accepted.turn.session_id, ok=bool(outcome and outcome.ok),
    )
    return body


# --- the worker: callback delivery -------------------------------------------------------------

def _worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]


def _claim(task_id, label: str) -> bool:
    """pending → processing, once. An expired task that was never attempted may still be answered (held)."""
    now = timezone.now()
    return bool(
        CallbackTask.objects.filter(pk=task_id)
        .filter(Q(status=CallbackTask.Status.PENDING) | Q(status=CallbackTask.Status.EXPIRED, attempts=0, claimed_at=None))
        .update(status=CallbackTask.Status.PROCESSING, claimed_at=now, claimed_by=label)
    )


def _post_timeout_seconds() -> float:
    return conf.callback_connect_timeout() + conf.callback_read_timeout() + POST_GRACE_SECONDS


def _recover(task_id) -> None:
    """A second run of a job that another run claimed: if that run died with a post in flight, the post's
    outcome is unknown — mark it failed rather than risk a second post. Otherwise leave it alone."""
    task = CallbackTask.objects.filter(pk=task_id).first()
    if task is None or task.status != CallbackTask.Status.PROCESSING or task.post_started_at is None:
        return
    if (timezone.now() - task.post_started_at).total_seconds() < _post_timeout_seconds():
        return  # the owner may still be waiting for Kakao's answer
    if CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.PROCESSING,
                                   post_started_at=task.post_started_at).update(
        status=CallbackTask.Status.FAILED, error_code="outcome_unknown", completed_at=timezone.now(),
        last_error="The worker stopped while posting; not posted again to avoid a duplicate answer.",
    ):
        event_log(bot=task.bot, kind=KakaoEvent.Kind.CALLBACK_FAILED, kakao_user=task.kakao_user,
                  task=task, error_code="outcome_unknown")


def _attempt_begin(task: CallbackTask, label: str, body: dict, kind: str) -> bool:
    """Record that a POST is about to be made (committed before the request leaves)."""
    return bool(
        CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.PROCESSING, claimed_by=label,
                                    post_started_at=None)
        .update(post_started_at=timezone.now(), attempts=F("attempts") + 1, response_body=body, response_kind=kind)
    )


def _attempt_record(task: CallbackTask, label: str, result: CallbackResult, *, final_status: str | None) -> None:
    """Record a POST's outcome and clear the in-flight marker; with final_status, finish the task."""
    fields = dict(
        post_started_at=None, http_status=result.http_status, kakao_status=result.kakao_status,
        kakao_message=result.kakao_message, error_code=result.error_code, last_error=result.error,
    )
    if result.kakao_task_id:
        fields["kakao_task_id"] = result.kakao_task_id
    if result.outcome == Outcome.DELIVERED:
        fields["posted_at"] = timezone.now()
    if final_status:
        fields.update(status=final_status, completed_at=timezone.now())
    CallbackTask.objects.filter(pk=task.pk, claimed_by=label).update(**fields)


def _finish(task: CallbackTask, label: str, status: str, *, code: str, error: str) -> None:
    CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.PROCESSING, claimed_by=label).update(
        status=status, error_code=code, last_error=error, completed_at=timezone.now()
    )


def _remaining(task: CallbackTask) -> float:
    return (task.deadline - timezone.now()).total_seconds()


def callback_deliver(*, task_id, announce: bool = False) -> str:
    """Answer a callback task's turn and POST it to Kakao, exactly once and never after the deadline.

    `announce`: send runtime's `turn_stored` signal first (the end-user timeline), which the
    one-statement acknowledgement did not do on the request path. Returns the task's final status
    (or "skipped" when another run owns it).
    """
    label = _worker_label()
    if not _claim(task_id, label):
        _recover(task_id)
        return "skipped"
    task = CallbackTask.objects.select_related("bot", "kakao_user", "turn", "turn__session").get(pk=task_id)
    if announce:
        signals.turn_stored.send(sender=Turn, turn=task.turn)
    bot = task.bot
    margin = conf.still_working_margin_seconds()
    # Started now, so it is answered (and held) even when the post below is skipped or fails.
    future = background.turn_answer_background(turn_id=task.turn_id)

    if _remaining(task) <= margin:
        # Picked up too late to answer in time (queue backlog, worker down): answer and hold.
        _finish(task, label, CallbackTask.Status.HELD, code="deadline_passed",
                error="The job started too late to answer through the callback.")
        event_log(bot=bot, kind=KakaoEvent.Kind.ANSWER_HELD, kakao_user=task.kakao_user, task=task, via="late_start")
        return CallbackTask.Status.HELD  # the answer goes on in the background; the worker thread moves on

    db_release()
    try:
        outcome = future.result(timeout=max(0.0, _remaining(task) - margin))
        ready = True
    except FutureTimeout:
        outcome, ready = None, False

    held: list[CallbackTask] = []
    if ready:
        held = held_claim(kakao_user_id=task.kakao_user_id, carrier=task, exclude_pk=task.pk)
        body, kind = answer_compose(outcome=outcome, held=held)
    else:
        body, kind = response_build([STILL_WORKING_TEXT], quick_replies=STILL_WORKING_REPLIES), CallbackTask.Kind.STILL_WORKING

    status = _post(task, label, body, kind)
    if held:
        if status == CallbackTask.Status.COMPLETED:
            event_log(bot=bot, kind=KakaoEvent.Kind.HELD_DELIVERED, kakao_user=task.kakao_user, task=task,
                      held=[str(t.pk) for t in held], via="callback")
        else:
            held_release(held)
    # When the answer was not ready, the callback is spent (or lost); the answer keeps being generated on
    # the pool and waits for the next message. The worker thread does not wait for it.
    return status


def _post(task: CallbackTask, label: str, body: dict, kind: str) -> str:
    """Wait for the settle time, then POST with up to N attempts while the deadline allows."""
    bot = task.bot
    delay = (task.not_before - timezone.now()).total_seconds()
    if delay > 0:
        db_release()
        time.sleep(delay)
    success_status = CallbackTask.Status.HELD if kind == CallbackTask.Kind.STILL_WORKING else CallbackTask.Status.COMPLETED
    attempts = conf.callback_max_attempts()
    last: CallbackResult | None = None
    for attempt in range(1, attempts + 1):
        remaining = _remaining(task)
        if remaining < conf.callback_connect_timeout() + 0.5:
            status = CallbackTask.Status.EXPIRED if last is None else CallbackTask.Status.FAILED
            _finish(task, label, status, code="deadline" if last is None else (last.error_code or "retries_exhausted"),
                    error="The deadline passed before the answer could be posted." if last is None
                    else f"Deadline reached after {attempt - 1} attempt(s): {last.error}")
            event_log(bot=bot, kind=KakaoEvent.Kind.CALLBACK_EXPIRED if last is None else KakaoEvent.Kind.CALLBACK_FAILED,
                      kakao_user=task.kakao_user, task=task, attempts=attempt - 1)
            return status
        try:
            url = callback_url_check(task.callback_url, allowed_hosts=bot.allowed_callback_hosts).url
        except CallbackUrlRejected as exc:
            security_logger.warning("kakao task %s: stored callbackUrl rejected in the worker (%s)", task.pk, exc.reason)
            _finish(task, label, CallbackTask.Status.FAILED, code="callback_url_rejected", error=exc.reason)
            event_log(bot=bot, kind=KakaoEvent.Kind.CALLBACK_URL_REJECTED, kakao_user=task.kakao_user, task=task,
                      reason=exc.reason, where="worker")
            return CallbackTask.Status.FAILED
        if not _attempt_begin(task, label, body, kind):
            logger.warning("kakao task %s: lost ownership before posting; not posting", task.pk)
            return "skipped"
        db_release()  # the in-flight marker is committed (autocommit): hold no connection over the network
        result = callback_post(url=url, body=body, timeout=max(0.5, remaining - 0.2))
        last = result
        if result.outcome == Outcome.DELIVERED:
            _attempt_record(task, label, result, final_status=success_status)
            event_log(bot=bot, kind=KakaoEvent.Kind.CALLBACK_DELIVERED if kind != CallbackTask.Kind.STILL_WORKING
                      else KakaoEvent.Kind.ANSWER_HELD, kakao_user=task.kakao_user, task=task,
                      kakao_task_id=result.kakao_task_id, attempts=attempt, response_kind=kind)
            return success_status
        if result.outcome == Outcome.FINAL or attempt == attempts:
            _attempt_record(task, label, result, final_status=CallbackTask.Status.FAILED)
            event_log(bot=bot, kind=KakaoEvent.Kind.CALLBACK_FAILED, kakao_user=task.kakao_user, task=task,
                      error_code=result.error_code, kakao_message=result.kakao_message, attempts=attempt)
            return CallbackTask.Status.FAILED
        _attempt_record(task, label, result, final_status=None)
        backoff = conf.callback_backoff_seconds() * (2 ** (attempt - 1))
        db_release()
        time.sleep(max(0.0, min(backoff, _remaining(task) - conf.callback_connect_timeout() - 0.5)))
    return CallbackTask.Status.FAILED  # not reached


# --- housekeeping and operator actions -----------------------------------------------------

def callback_tasks_sweep(*, organization=None) -> dict:
    """Expire tasks no worker took in time; fail posts whose worker died mid-flight."""
    now = timezone.now()
    tasks = CallbackTask.objects.filter(mode=CallbackTask.Mode.CALLBACK)
    if organization is not None:
        tasks = tasks.filter(organization=organization)
    grace = timedelta(seconds=_post_timeout_seconds())
    expired = tasks.filter(status=CallbackTask.Status.PENDING, deadline__lt=now).update(
        status=CallbackTask.Status.EXPIRED, error_code="not_picked_up", completed_at=now,
        last_error="No worker took the job before the deadline.",
    )
    unknown = tasks.filter(status=CallbackTask.Status.PROCESSING, post_started_at__lt=now - grace).update(
        status=CallbackTask.Status.FAILED, error_code="outcome_unknown", completed_at=now, post_started_at=None,
        last_error="The worker stopped while posting; not posted again to avoid a duplicate answer.",
    )
    stalled = tasks.filter(status=CallbackTask.Status.PROCESSING, post_started_at=None, deadline__lt=now - grace).update(
        status=CallbackTask.Status.EXPIRED, error_code="worker_lost", completed_at=now,
        last_error="The worker stopped before posting.",
    )
    return {"expired": expired, "outcome_unknown": unknown, "worker_lost": stalled}


# Failures known to precede delivery. Not "timeout"/"network_error" (older rows): the request had gone out.
RETRYABLE_ERRORS = {"broker_unreachable", "connect_error", "kakao_error",
                    "http_500", "http_502", "http_503", "http_504", "http_429", "retries_exhausted"}


def callback_task_retry(*, task: CallbackTask) -> CallbackTask:
    """Queue a failed delivery again, only while its token is certainly unused and still valid."""
    if task.mode != CallbackTask.Mode.CALLBACK:
        raise ApiError("not_deliverable", "This answer was given synchronously; it has no callback to retry.", 409)
    if task.status in (CallbackTask.Status.PENDING, CallbackTask.Status.PROCESSING):
        raise ApiError("in_progress", "This task is still being delivered.", 409)
    if task.status != CallbackTask.Status.FAILED:
        raise ApiError("not_deliverable", f"A {task.status} task cannot be retried.", 409)
    if task.kakao_status in ("SUCCESS", "FAIL") or task.error_code not in RETRYABLE_ERRORS:
        raise ApiError("not_deliverable",
                       "Kakao already answered this callback token (or its outcome is unknown); it cannot be used again.",
                       409)
    if _remaining(task) < conf.callback_connect_timeout() + conf.callback_settle_seconds() + 1:
        raise ApiError("not_deliverable", "The callback token has expired (Kakao keeps it for about a minute).", 409)
    updated = CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.FAILED).update(
        status=CallbackTask.Status.PENDING, claimed_at=None, claimed_by="", completed_at=None, post_started_at=None,
    )
    if not updated:
        raise ApiError("in_progress", "This task changed meanwhile; reload it.", 409)
    runtime.turn_reopen(turn_id=task.turn_id)
    try:
        callback_enqueue(task_id=task.pk)
    except Exception as exc:
        CallbackTask.objects.filter(pk=task.pk, status=CallbackTask.Status.PENDING).update(
            status=CallbackTask.Status.FAILED, error_code="broker_unreachable", last_error=str(exc)[:500]
        )
        raise ApiError("broker_unreachable", "The job queue is unreachable; try again shortly.", 503) from None
    task.refresh_from_db()
    return task
