"""The per-client driver: answers a client_id's turns one at a time, in order, off the socket.

`driver_kick(client)` after a chat is stored. One driver runs per client_id across processes (a
lock with a TTL it renews — a Redis key set with NX from the event loop, no thread hop; in memory
without Redis — and a dead process's lock expires so the next kick takes over). For
each pending turn it runs the runtime's answer, maps its events to frames (`start`, coalesced
`response`s, exactly one `end` or `error`) and sends them with `connections.client_send`. A
watchdog ends a turn whose model is silent; `stop` (from any process) cancels the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from django.conf import settings

from assistant import backlog, conf, protocol, services
from assistant.connections import client_send
from assistant.sync import db
from runtime import background

logger = logging.getLogger(__name__)

_drivers: set[asyncio.Task] = set()  # strong references: a task only weakly held may be collected


# --- the runtime seam: the only place that knows how an answer runs and is cancelled ---------


def answer_cancel(*, turn_id) -> None:
    """Stop the answer of `turn_id` wherever it runs (runtime.background.turn_cancel)."""
    background.turn_cancel(turn_id=turn_id)


def _answer_events(turn):
    """The turn's events from its background answer, which goes on if this driver is gone."""
    return background.turn_answer_follow(turn_id=turn.id)


# --- coalescing -------------------------------------------------------------------------------


class ResponseCoalescer:
    """Gathers deltas into `response` frames at most every `interval` seconds; drops nothing.

    The stored reply is the model's text stripped, so leading whitespace is dropped and trailing
    whitespace held back until more text follows: what the frames add up to is what is stored.
    """

    def __init__(self, *, client_id: str, turn_id, interval: float):
        self.client_id, self.turn_id, self.interval = client_id, str(turn_id), interval
        self.pending = ""
        self.held = ""  # trailing whitespace, sent only if more text follows
        self.sent: list[str] = []
        self.last_flush = 0.0

    @property
    def text(self) -> str:
        return "".join(self.sent)

    def add(self, piece: str) -> None:
        piece = self.held + piece
        if not self.sent and not self.pending:
            piece = piece.lstrip()
        stripped = piece.rstrip()
        self.held = piece[len(stripped):]
        self.pending += stripped

    def due_in(self) -> float | None:
        if not self.pending:
            return None
        return max(0.0, self.last_flush + self.interval - time.monotonic())

    async def flush(self) -> None:
        if self.pending:
            content, self.pending = self.pending, ""
            self.sent.append(content)
            self.last_flush = time.monotonic()
            await client_send(client_id=self.client_id, frame=protocol.frame_response(turn_id=self.turn_id,
                                                                                      content=content))

    async def flush_if_due(self) -> None:
        due = self.due_in()
        if due is not None and due <= 0:
            await self.flush()

    async def finish(self, final: str) -> None:
        """Send what is left so the frames add up to `final` (the stored reply)."""
        await self.flush()
        streamed = self.text
        if final.startswith(streamed) and final != streamed:
            self.pending = final[len(streamed):]
            await self.flush()
        elif final != streamed:
            # The stored reply is not a continuation of what was streamed (it should never happen):
            # say so with the whole text, so the client shows what is stored.
            logger.warning("assistant: turn %s streamed text differs from the stored reply", self.turn_id)
            await client_send(client_id=self.client_id, frame={"type": "snapshot", "turn_id": self.turn_id,
                                                                "content": final, "status": "completed"})


# --- the driver ---------------------------------------------------------------------------------

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_memory_locks: dict[str, tuple[str, float]] = {}  # client_id -> (token, expires at): one process, no Redis


def _lock_key(client_id: str) -> str:
    return backlog.key(client_id, "driver")


async def _lock_take(client_id: str, token: str) -> bool:
    ttl = conf.driver_lock_seconds()
    if settings.REDIS_URL:
        return bool(await backlog.redis_client().set(_lock_key(client_id), token, nx=True, ex=ttl))
    held = _memory_locks.get(client_id)
    if held is not None and held[1] > time.monotonic():
        return False
    _memory_locks[client_id] = (token, time.monotonic() + ttl)
    return True


async def _lock_release(client_id: str, token: str) -> None:
    """Release the lock if it is still ours (compare-and-delete)."""
    if settings.REDIS_URL:
        await backlog.redis_client().eval(_RELEASE, 1, _lock_key(client_id), token)
    elif (_memory_locks.get(client_id) or ("",))[0] == token:
        del _memory_locks[client_id]


async def _lock_renew(client_id: str, token: str) -> None:
    ttl = conf.driver_lock_seconds()
    while True:
        await asyncio.sleep(ttl / 3)
        if settings.REDIS_URL:
            await backlog.redis_client().eval(_RENEW, 1, _lock_key(client_id), token, ttl)
        elif (_memory_locks.get(client_id) or ("",))[0] == token:
            _memory_locks[client_id] = (token, time.monotonic() + ttl)


async def driver_kick(*, client_pk: int, client_id: str, first=None) -> None:
    """Make sure a driver answers this client's pending turns (here, unless one runs elsewhere).

    `first`: the ClientTurn just stored when nothing of the client was ahead of it (position 0):
    the driver answers it without looking the queue up first.
    """
    token = uuid.uuid4().hex
    if await _lock_take(client_id, token):
        task = asyncio.ensure_future(_drive(client_pk=client_pk, client_id=client_id, token=token, first=first))
        _drivers.add(task)
        task.add_done_callback(_drivers.discard)


async def _drive(*, client_pk: int, client_id: str, token: str, first=None) -> None:
    renew = asyncio.ensure_future(_lock_renew(client_id, token))
    try:
        while True:
            entry, first = first, None
            if entry is None:
                entry = await db(services.client_turn_pending_next)(client_pk=client_pk)
            if entry is None:
                await _lock_release(client_id, token)
                # A chat stored after the look-up above, whose kick found our lock: take it back.
                entry = await db(services.client_turn_pending_next)(client_pk=client_pk)
                if entry is None or not await _lock_take(client_id, token):
                    return
            try:
                await turn_deliver(client_id=client_id, entry=entry)
            except Exception:
                logger.exception("assistant: answering turn %s of %s failed", entry.turn_id, client_id)
    finally:
        renew.cancel()


_END = object()


async def turn_deliver(*, client_id: str, entry) -> None:
    """Answer one turn through the runtime and send its frames: start, response…, one end or error."""
    turn = entry.turn
    turn_id = str(turn.id)
    queue: asyncio.Queue = asyncio.Queue()
    events = _answer_events(turn)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the pipeline failed outside its own error events
            logger.exception("assistant: the answer of turn %s raised", turn_id)
            await queue.put(exc)
        finally:
            await queue.put(_END)

    reader = asyncio.ensure_future(pump())
    coalescer = ResponseCoalescer(client_id=client_id, turn_id=turn_id, interval=conf.coalesce_seconds())
    watchdog = conf.watchdog_seconds()
    heard = time.monotonic()
    started = False

    async def send(frame: dict) -> None:
        await client_send(client_id=client_id, frame=frame)

    async def start_once() -> None:
        nonlocal started
        if not started:
            started = True
            await send(protocol.frame_start(turn_id=turn_id, message_id=entry.message_id))

    async def cancel_answer() -> None:
        reader.cancel()
        try:
            await reader
        except (asyncio.CancelledError, Exception):
            pass

    try:
        while True:
            waits = [max(0.0, heard + watchdog - time.monotonic())]
            due = coalescer.due_in()
            if due is not None:
                waits.append(due)
            try:
                item = await asyncio.wait_for(queue.get(), timeout=min(waits))
            except TimeoutError:
                item = None
            if item is None:
                await coalescer.flush_if_due()
                if time.monotonic() - heard >= watchdog:
                    # The model is silent: stop its answer (the partial text is kept) and say why.
                    await db(answer_cancel)(turn_id=turn_id)
                    await cancel_answer()
                    await start_once()
                    await coalescer.flush()
                    await send(protocol.frame_turn_error(turn_id=turn_id, code="model_stalled",
                                                         message=protocol.message_for("model_stalled")))
                    return
                continue
            if item is _END:
                await start_once()
                await coalescer.flush()
                await send(protocol.frame_turn_error(turn_id=turn_id, code="internal_error",
                                                     message=protocol.message_for("internal_error")))
                return
            if isinstance(item, Exception):
                continue  # _END follows
            heard = time.monotonic()
            if item.type == "start" and item.data.get("replayed") and not started:
                # Already answered (by a driver that took it between our look-up and the claim):
                # its frames went out from there; sending the replay would repeat them.
                logger.info("assistant: turn %s of %s was answered elsewhere", turn_id, client_id)
                return
            if item.type == "start":
                await start_once()
            elif item.type == "delta":
                await start_once()
                coalescer.add(item.data.get("text") or "")
                await coalescer.flush_if_due()
            elif item.type == "message":
                await start_once()
                await coalescer.finish(item.data.get("message") or "")
                await send(protocol.frame_end(turn_id=turn_id))
                return
            elif item.type == "error":
                await start_once()
                await coalescer.flush()
                code = item.data.get("code") or "turn_failed"
                if code == "stopped":
                    await send(protocol.frame_end(turn_id=turn_id, stopped=True))
                else:
                    await send(protocol.frame_turn_error(turn_id=turn_id, code=code,
                                                         message=_bilingual(code, item.data.get("message") or "")))
                return
    finally:
        if not reader.done():
            await cancel_answer()


_RUNTIME_MESSAGES_KO = {
    "llm_timeout": "모델이 제시간에 답하지 않았습니다.",
    "llm_unavailable": "모델에 연결할 수 없습니다.",
    "llm_rate_limited": "모델 사용량이 많습니다. 잠시 후 다시 시도해 주세요.",
    "llm_error": "모델이 오류를 돌려주었습니다.",
    "llm_stream_broken": "모델의 답변이 중간에 끊겼습니다.",
    "order_timeout": "앞선 메시지가 아직 답변 중입니다.",
}


def _bilingual(code: str, message: str) -> str:
    """The runtime's error messages are English: put the Korean first when we have it."""
    korean = _RUNTIME_MESSAGES_KO.get(code) or ("답변하지 못했습니다." if code.startswith("llm_") else "")
    if korean and message and not any("\uac00" <= ch <= "\ud7a3" for ch in message):
        return f"{korean} ({message})"
    return message or protocol.message_for(code)
