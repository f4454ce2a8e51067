"""The Open Builder skill endpoints: POST /kakao/skill (a plain sync view) and POST /kakao/welcome (async)."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from asgiref.sync import async_to_sync, sync_to_async
from django.db import DatabaseError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from psycopg_pool import PoolTimeout

from kakao import conf, services
from kakao.parsing import body_decode, skill_request_parse
from kakao.responses import response_build
from mejai.errors import ApiError
from runtime.http import body_read

logger = logging.getLogger(__name__)


# --- load shedding: past capacity every request still gets a valid skill response, fast -------------

class Overloaded(Exception):
    """No database slot within KAKAO_SKILL_QUEUE_SECONDS."""


class _Admission:
    """The process's skill requests in flight and its database slots (thread-safe: Django runs the view's
    sync parts on per-request threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.slots_size = 0
        self.slots: threading.BoundedSemaphore | None = None
        self.shed = 0  # requests answered with the busy apology since the process started
        self.shed_logged_at = 0.0

    def enter(self) -> bool:
        limit = conf.skill_max_in_flight()
        with self.lock:
            if self.in_flight >= limit:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def semaphore(self) -> threading.BoundedSemaphore:
        size = conf.skill_db_slots()
        with self.lock:
            if self.slots is None or self.slots_size != size:
                self.slots, self.slots_size = threading.BoundedSemaphore(size), size
            return self.slots

    def shed_note(self, why: str) -> None:
        """Count a shed request; log at most once a second (a flood must not become a flood of log lines)."""
        now = time.monotonic()
        with self.lock:
            self.shed += 1
            total, due = self.shed, now - self.shed_logged_at >= 1.0
            if due:
                self.shed_logged_at = now
        if due:
            logger.warning("kakao: busy, skill request answered with the apology (%s; %d so far)", why, total)


admission = _Admission()


@contextmanager
def _db_slot():
    slots = admission.semaphore()
    if not slots.acquire(timeout=conf.skill_queue_seconds()):
        raise Overloaded
    try:
        yield
    finally:
        slots.release()


def busy_response() -> dict:
    """The apology Kakao shows when the request could not be taken (a valid skill response, one bubble)."""
    return response_build([services.BUSY_TEXT])


def _json(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})


def _authenticated_request(request, *, require_utterance: bool = True):
    """Body → JSON → fields → that bot's secret, each failure an ApiError (sync: runs off the event loop).

    The bot is selected by the body's bot.id before any secret is compared (bot_authenticate).
    """
    raw = body_read(request, limit=conf.max_body_bytes())
    data = body_decode(body=raw, content_type=request.META.get("CONTENT_TYPE", ""))
    skill = skill_request_parse(data, require_utterance=require_utterance)
    bot = services.bot_authenticate(headers=request.headers, bot_id=skill.bot_id)
    return bot, skill


def _skill_accept(request):
    bot, skill_request = _authenticated_request(request)
    with _db_slot():
        return services.skill_receive(bot=bot, skill=skill_request)


def _method_check(request) -> None:
    if request.method != "POST":
        raise ApiError("method_not_allowed", f"Method {request.method} is not allowed; use POST.", 405)


def _error(exc: ApiError) -> JsonResponse:
    response = _json(exc.as_dict(), exc.status)
    if exc.status == 405:
        response["Allow"] = "POST"
    if exc.status == 401:
        response["WWW-Authenticate"] = "KakaoSkillSecret"
    return response


@csrf_exempt
def skill(request):
    """Kakao i Open Builder skill: acknowledge with useCallback, or answer within the 5 s budget.

    A plain sync view on purpose: Django runs the (sync) middleware on the request's thread, so a
    sync view is called right there — no hop to the event loop and back to a thread for the
    database (two thread hand-offs per acknowledgement). Only the rare synchronous answer (no
    callbackUrl) goes to the event loop, to wait for the background answer within its budget.

    Past capacity — more than KAKAO_SKILL_MAX_IN_FLIGHT requests in flight, no database slot within
    KAKAO_SKILL_QUEUE_SECONDS, the database pool's wait timing out or the database unreachable — the
    answer is the busy apology (200, a valid skill response), never silence or a 5xx.
    """
    try:
        _method_check(request)
    except ApiError as exc:
        return _error(exc)
    if not admission.enter():
        admission.shed_note("in-flight limit")
        return _json(busy_response())
    try:
        try:
            accepted = _skill_accept(request)
        except ApiError as exc:
            return _error(exc)
        except Overloaded:
            admission.shed_note("no database slot")
            return _json(busy_response())
        except (DatabaseError, PoolTimeout) as exc:
            # Nothing acknowledged: the statement did not commit (or the store was never reached).
            admission.shed_note(f"database: {type(exc).__name__}")
            return _json(busy_response())
        if accepted.kind == "callback" or accepted.response is not None:
            return _json(accepted.response)
        try:
            return _json(async_to_sync(services.skill_answer_sync)(accepted=accepted))
        except Exception:
            logger.exception("kakao: synchronous answer failed")
            return _json(response_build([services.APOLOGY_TEXT]))
    finally:
        admission.leave()


@csrf_exempt
async def welcome(request):
    """The welcome block: greet (by name when known) without the LLM; nothing is stored."""
    try:
        _method_check(request)
        bot, skill_request = await sync_to_async(_authenticated_request)(request, require_utterance=False)
    except ApiError as exc:
        return _error(exc)

    def greet() -> dict:
        from kakao.models import KakaoUser

        user = KakaoUser.objects.select_related("end_user").filter(bot=bot, user_key=skill_request.user_id).first()
        name = user.end_user.display_name if user else ""
        text = f"{name}님, 다시 만나서 반가워요!\n{bot.welcome_text}" if name else bot.welcome_text
        return response_build([text], quick_replies=[{"label": "이름 알려주기", "message": "/이름"}] if not name else [])

    return _json(await sync_to_async(greet)())


