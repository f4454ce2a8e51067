"""Answers that outlive their connection: answer a stored turn in the background, wait for it within
a time budget, follow its events, or stop it from anywhere.

Which channels use what (docs/runtime.md, "Answers and connections"):

* API SSE/JSON answers stream on the request (`turn_answer_stream`): a dropped connection cancels
  the answer, and the partial text is kept as `interrupted` (`client_disconnected`).
* Widget, assistant and Mattermost answers run here: a dropped connection does not stop them;
  the answer finishes, is stored, and is replayed on reconnect (`runtime.live`).
* Kakao waits for the answer within its synchronous budget (`turn_answer_within`) and otherwise
  leaves it running, to be delivered later.

An answer runs as an asyncio task: on the caller's event loop when there is one (a web process,
the Mattermost worker), else on one runtime loop thread per process (Celery workers, in-process
jobs). Every event is published to the session's live group. Within a process an answer runs
once per turn; across processes the pipeline's claim on the turn keeps it to one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import AsyncIterator

from asgiref.sync import AsyncToSync, ThreadSensitiveContext, sync_to_async
from django.core.cache import cache

from mejai.concurrency import SerialLane, db_release, stream_db_pool
from runtime import live
from runtime.events import TurnEvent, event_error
from runtime.models import Turn

logger = logging.getLogger(__name__)

CANCEL_KEY = "runtime:turn-cancel:{}"
CANCEL_TTL_SECONDS = 600
CANCEL_POLL_SECONDS = 0.3
STOPPED_MESSAGE = "답변을 멈췄어요. (The answer was stopped.)"


class BackgroundAnswer:
    """One turn being answered in this process: its future, and the events so far for followers."""

    def __init__(self, turn_id: str, loop: asyncio.AbstractEventLoop):
        self.turn_id = turn_id
        self.loop = loop
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        # Running from the start, as an executor's future is: cancel() on it is then a no-op, so one
        # caller giving up (cancelling its `asyncio.wrap_future(...)`) cannot cancel it for the others.
        self.future.set_running_or_notify_cancel()
        self.task: asyncio.Task | None = None
        self.events: list[TurnEvent] = []
        self.followers: set[asyncio.Queue] = set()
        self.stop_requested = False
        self.terminal: TurnEvent | None = None  # the `message` or `error` once it happened

    def emit(self, event: TurnEvent | None) -> None:
        if event is not None:
            self.events.append(event)
        for queue in list(self.followers):
            queue.put_nowait(event)


_answers: dict[str, BackgroundAnswer] = {}
_answers_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _runtime_loop() -> asyncio.AbstractEventLoop:
    """The process's runtime loop thread, for callers without an event loop of their own."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="runtime-answers", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def _turn_load(turn_id) -> Turn:
    from runtime.services import _turn_reload

    return _turn_reload(turn_id)


def _mark_stopped(turn_id) -> None:
    Turn.objects.filter(pk=turn_id, status=Turn.Status.INTERRUPTED).update(
        error_code="stopped", error="Stopped at the user's request."
    )


async def _answer(answer: BackgroundAnswer, *, page: dict | None, sender: str) -> None:
    from runtime.services import TurnOutcome, outcome_gather, turn_answer_stream

    # Its own serial lane for the database work, on the bounded stream-db pool (no thread held while
    # it waits on the model), independent of the request that started it: the answer outlives it.
    # Under a sync caller (async_to_sync: tests, sync callers) the work goes back to that caller's
    # thread as before.
    lane = SerialLane(stream_db_pool()) if _loop_outlives_caller() else None
    async with ThreadSensitiveContext(executor=lane):
        turn = None
        outcome = None
        try:
            turn = await sync_to_async(_turn_load)(answer.turn_id)
            session_id = turn.session_id

            def stopped_event(turn_id):
                return event_error(code="stopped", message=STOPPED_MESSAGE, session_id=session_id, turn_id=turn_id)

            events = live.events_publish(
                session_id=turn.session_id, seq=turn.seq, sender=sender, user_text=turn.user_text,
                events=turn_answer_stream(turn=turn, page=page), cancelled_event=stopped_event,
            )

            async def recorded() -> AsyncIterator[TurnEvent]:
                async for event in events:
                    if event.type in ("message", "error"):
                        answer.terminal = event
                    answer.emit(event)
                    yield event

            outcome = await outcome_gather(recorded())
        except asyncio.CancelledError:
            if answer.terminal is not None:
                # Cancelled after it finished (the loop of a sync caller closing): the outcome stands.
                outcome = await outcome_gather(_events_of(answer.terminal))
            elif turn is not None and answer.stop_requested:
                # Stopped (turn_cancel): the pipeline kept the partial text and marked the turn interrupted;
                # events_publish has published the `stopped` error to the session's other listeners.
                await sync_to_async(_mark_stopped)(turn.pk)
                stopped = event_error(code="stopped", message=STOPPED_MESSAGE, session_id=turn.session_id,
                                      turn_id=turn.pk)
                answer.emit(stopped)
                outcome = TurnOutcome(str(turn.pk), str(turn.session_id), None, stopped.data)
            else:
                # The loop this answer ran on is closing: the pipeline kept the partial text
                # (interrupted, client_disconnected), and that is the outcome.
                outcome = TurnOutcome(answer.turn_id, str(getattr(turn, "session_id", "") or "") or None, None,
                                      {"code": "client_disconnected", "message": "The answer was interrupted."})
        except Exception:
            logger.exception("runtime: background answer of turn %s failed", answer.turn_id)
            failed = event_error(code="internal_error", message="답변 중 오류가 발생했어요. (Something went wrong.)",
                                 session_id=getattr(turn, "session_id", None), turn_id=answer.turn_id)
            answer.emit(failed)
            outcome = TurnOutcome(answer.turn_id, str(getattr(turn, "session_id", "") or "") or None, None,
                                  failed.data)
        finally:
            # Settle first, with no await before it: the loop may be closing (an async_to_sync caller
            # returned), and a stale entry would make a later request for this turn wait for ever.
            with _answers_lock:
                if _answers.get(answer.turn_id) is answer:
                    del _answers[answer.turn_id]
            if not answer.future.done():
                answer.future.set_result(outcome)
            answer.emit(None)
            # Give the answer's database connection back to the pool: its thread ends with it.
            try:
                await sync_to_async(db_release)()
            except BaseException:
                logger.debug("runtime: releasing the answer's connection failed", exc_info=True)


async def _events_of(*events: TurnEvent) -> AsyncIterator[TurnEvent]:
    for event in events:
        yield event


def _start(answer: BackgroundAnswer, *, page, sender, fresh_context: bool = False) -> None:
    # The task copies the caller's context: under an outer sync thread (async_to_sync: tests, sync
    # callers) database work goes back to that thread, as the caller's own would; on a server loop
    # _answer's ThreadSensitiveContext gives it a serial lane (no thread of its own) for as long as it runs.
    # On the runtime loop it starts from an empty context: nothing of the sync caller's applies there.
    context = contextvars.Context() if fresh_context else None
    answer.task = answer.loop.create_task(_answer(answer, page=page, sender=sender), context=context)
    _cancel_watch_ensure(answer.loop)


def _loop_outlives_caller() -> bool:
    """Whether the running loop may carry an answer past its caller: a server's loop, not the
    short-lived loop of an async_to_sync call (a sync caller, a test client), which is torn down,
    cancelling its tasks, when that call returns."""
    return getattr(AsyncToSync.executors, "current", None) is None


def _get_or_start(turn_id, *, page: dict | None, sender: str, followed: bool = False) -> BackgroundAnswer:
    """The turn's answer in this process, started if needed: on the running loop when it outlives
    the caller (or the caller follows the answer to its end), else on the runtime loop thread."""
    key = str(turn_id)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and not (followed or _loop_outlives_caller()):
        running = None
    with _answers_lock:
        answer = _answers.get(key)
        if answer is not None and not answer.loop.is_closed():
            return answer
        loop = running or _runtime_loop()
        answer = _answers[key] = BackgroundAnswer(key, loop)
    if running is not None:
        _start(answer, page=page, sender=sender)
    else:
        loop.call_soon_threadsafe(lambda: _start(answer, page=page, sender=sender, fresh_context=True),
                                  context=contextvars.Context())
    return answer


def turn_answer_background(*, turn_id, page: dict | None = None, sender: str = "") -> concurrent.futures.Future:
    """Answer a stored turn in the background; a Future of its TurnOutcome.

    Idempotent per turn within a process (a second call returns the same future). The answer
    publishes every event to the session's live group and does not depend on the caller staying.
    From async code: `await asyncio.wrap_future(future)`.
    """
    return _get_or_start(turn_id, page=page, sender=sender).future


def turn_answer_within(*, turn_id, seconds: float, page: dict | None = None):
    """Start (or join) the background answer and wait up to `seconds` (sync callers only).

    Returns the TurnOutcome, or None when it is not finished yet (it goes on by itself).
    """
    future = turn_answer_background(turn_id=turn_id, page=page)
    try:
        return future.result(timeout=max(0.0, seconds))
    except concurrent.futures.TimeoutError:
        return None


async def aturn_answer_within(*, turn_id, seconds: float, page: dict | None = None):
    """Async form of turn_answer_within."""
    future = turn_answer_background(turn_id=turn_id, page=page)
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout=max(0.0, seconds))
    except TimeoutError:
        return None


async def turn_answer_follow(*, turn_id, page: dict | None = None, sender: str = "") -> AsyncIterator[TurnEvent]:
    """The events of the turn's background answer as they happen (from its start, even if joined late).

    Leaving early (the client went away) does not stop the answer.
    """
    answer = _get_or_start(turn_id, page=page, sender=sender, followed=True)
    if answer.loop is not asyncio.get_running_loop():
        # Answered on another loop of this process: wait for the outcome and replay it.
        await asyncio.wrap_future(answer.future)
        for event in await sync_to_async(lambda: live.replay_events(_turn_load(turn_id)))():
            yield event
        return
    queue: asyncio.Queue = asyncio.Queue()
    for event in answer.events:
        queue.put_nowait(event)
    finished = answer.future.done()
    if finished:
        queue.put_nowait(None)
    else:
        answer.followers.add(queue)
    try:
        while (event := await queue.get()) is not None:
            yield event
            if event.type in ("message", "error"):
                return
    finally:
        answer.followers.discard(queue)


def turn_cancel(*, turn_id) -> None:
    """Stop the answer of a turn wherever it runs (this process, or another one within ~0.3 s).

    The pipeline stores the partial text; the turn ends `interrupted` with error_code `stopped`, and
    an `error` event with code `stopped` is published. A turn that is not being answered is left alone.
    """
    key = str(turn_id)
    # Only a turn being answered (claimed) gets the flag other processes poll: a flag left on a
    # pending or stored turn would stop its answer when it starts later (a retry, a reopen).
    if Turn.objects.filter(pk=turn_id, status=Turn.Status.STREAMING).exists():
        cache.set(CANCEL_KEY.format(key), 1, CANCEL_TTL_SECONDS)
    with _answers_lock:
        answer = _answers.get(key)
    if answer is not None:
        _cancel_local(answer)


def _cancel_local(answer: BackgroundAnswer) -> None:
    if answer.stop_requested:
        return
    answer.stop_requested = True

    def cancel():
        if answer.task is not None and not answer.task.done():
            answer.task.cancel()

    answer.loop.call_soon_threadsafe(cancel)


# One watcher per loop with answers: a single cache read for all of them, every CANCEL_POLL_SECONDS.
_watchers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def _cancel_watch_ensure(loop: asyncio.AbstractEventLoop) -> None:
    task = _watchers.get(loop)
    if task is None or task.done():
        _watchers[loop] = loop.create_task(_cancel_watch(loop), context=contextvars.Context())


async def _cancel_watch(loop) -> None:
    while True:
        with _answers_lock:
            mine = [a for a in _answers.values() if a.loop is loop and not a.stop_requested]
        if not mine:
            _watchers.pop(loop, None)
            return
        keys = {CANCEL_KEY.format(a.turn_id): a for a in mine}
        try:
            found = await sync_to_async(cache.get_many, thread_sensitive=False)(list(keys))
        except Exception:
            logger.warning("runtime: cancel flags could not be read", exc_info=True)
            found = {}
        for key in found:
            _cancel_local(keys[key])
        await asyncio.sleep(CANCEL_POLL_SECONDS)
