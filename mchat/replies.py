"""Replies in Mattermost: typing until the first token, one post edited as the answer grows (≈1/s, only
when enough new text arrived, all props every time), long answers continued in new posts split at
paragraph/fence boundaries, the edit time limit continued in a new post, a model error keeping the
partial text with a note, and the outbox that delivers what could not be sent (in order per channel,
one pending_post_id per logical post, a look for our own post before posting again after 30 s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from mchat import conf, parsing
from mchat.answering import answer_events, answer_stop
from mchat.clients.mattermost import EDIT_TIME_LIMIT, MattermostError, Unauthorized
from mchat.models import InboundPost, OutboxPost
from runtime.models import Turn

logger = logging.getLogger("mchat.replies")

ERROR_NOTE = "\n\n_(답변을 끝까지 만들지 못했어요. 잠시 후 다시 물어봐 주세요. · The answer was cut short by an error.)_"
ERROR_ONLY = "죄송해요, 지금은 답변을 드리기 어려워요. 잠시 후 다시 물어봐 주세요. (Sorry, I could not answer just now.)"
STOP_NOTE = "\n\n_(요청에 따라 답변을 멈췄어요. · Stopped on request.)_"
STOPPED_EMPTY = "_(요청에 따라 답변을 멈췄어요. · Stopped on request.)_"
INTERRUPTED_NOTE = "\n\n_(답변 중에 중단되었어요. 다시 물어봐 주세요. · The answer was interrupted; please ask again.)_"
TYPING_EVERY_SECONDS = 4.0
MARKER = "mejai_reply"
# Only a guard against a reply that never shows (it always resolves when it finishes or fails); under the
# rate limiter a long backlog takes minutes to drain, and replies must not overtake each other meanwhile.
ORDER_WAIT_SECONDS = 600.0


@dataclass
class Part:
    outbox_id: object
    pending_post_id: str
    start: int  # offset of this post's text in the whole answer
    post_id: str = ""
    raw_len: int = 0  # characters of the answer this post shows (as last sent while streaming)
    frozen: bool = False  # the edit time limit passed: this post can no longer change
    sent: str = ""


def _db():
    from mchat.worker import db

    return db


# --- outbox rows ----------------------------------------------------------------------------------

def _row_create(*, bot_id, inbound_id, turn_id, channel_id, root_id, part, text, status) -> OutboxPost:
    return OutboxPost.objects.create(bot_id=bot_id, inbound_id=inbound_id, turn_id=turn_id, channel_id=channel_id,
                                     root_id=root_id, part=part, text=text, status=status,
                                     pending_post_id=f"mejai:{uuid.uuid4().hex}")


def _row_update(*, outbox_id, **fields) -> None:
    OutboxPost.objects.filter(pk=outbox_id).update(**fields)


def _row_posted(*, outbox_id, post_id: str, text: str, done: bool) -> None:
    row = OutboxPost.objects.get(pk=outbox_id)
    ids = list(row.post_ids or [])
    if post_id not in ids:
        ids.append(post_id)
    fields = {"post_id": post_id, "post_ids": ids, "text": text, "last_error": ""}
    if done:
        fields.update(status=OutboxPost.Status.SENT, sent_at=timezone.now())
    OutboxPost.objects.filter(pk=outbox_id).update(**fields)


def _backlog_in_channel(*, bot_id: int, channel_id: str) -> bool:
    """Replies of this channel still waiting (an outage): a new reply queues behind them, never ahead."""
    return OutboxPost.objects.filter(bot_id=bot_id, channel_id=channel_id, status=OutboxPost.Status.PENDING).exists()


class ReplyStream:
    """The streamed answer to one post."""

    def __init__(self, worker, *, conversation, inbound: InboundPost, post: dict, channel_id: str | None = None,
                 root_id: str | None = None, after: asyncio.Future | None = None, shown: asyncio.Future | None = None):
        self.worker = worker
        self.client = worker.client
        self.bot_id = worker.bot_id
        self.inbound = inbound
        self.channel_id = channel_id or conversation.channel.mchat_channel_id
        self.root_id = conversation.reply_root_id if root_id is None else root_id
        self.parts: list[Part] = []
        self.full = ""
        self.turn_id = None
        self.queued = False  # deliver through the outbox only (a backlog in this channel, or Mattermost down)
        self._stop = asyncio.Event()
        self._after, self._shown = after, shown  # order of replies within the channel
        self._last_edit = 0.0
        self._typing: asyncio.Task | None = None

    async def stop(self) -> None:
        """`@ai stop`: the answer stops wherever it runs; its partial text stays, with a note."""
        self._stop.set()
        if self.turn_id is not None:
            await answer_stop(turn_id=self.turn_id)

    def _props(self, part: Part) -> dict:
        # Patches replace props entirely: always send all of them.
        return {MARKER: part.pending_post_id, "mejai_turn": str(self.turn_id or ""), "mejai_part": str(
            self.parts.index(part) if part in self.parts else 0)}

    # --- the answer ---------------------------------------------------------------------------
    async def run(self, turn: Turn) -> None:
        db = _db()
        self.turn_id = turn.pk
        self.queued = await db(_backlog_in_channel, bot_id=self.bot_id, channel_id=self.channel_id)
        if not self.queued:
            self._typing = asyncio.create_task(self._typing_loop())
        error, stopped = None, False
        events = answer_events(turn=turn)
        try:
            async for event in events:
                if event.type == "delta":
                    self._typing_stop()
                    self.full += event.data.get("text", "")
                    if not self._stop.is_set():
                        await self._progress()
                elif event.type == "message":
                    self.full = event.data.get("message") or self.full
                    break
                elif event.type == "error":
                    stopped = event.data.get("code") == "stopped"
                    error = None if stopped else event.data
                    break
        finally:
            await events.aclose()
            self._typing_stop()
        if stopped:
            final = (self.full.rstrip() + STOP_NOTE) if self.full.strip() else STOPPED_EMPTY
        elif error is not None:
            final = (self.full.rstrip() + ERROR_NOTE) if self.full.strip() else ERROR_ONLY
        else:
            final = self.full if self.full.strip() else ERROR_ONLY
        await self.finish(final)

    async def deliver_note(self, text: str) -> None:
        """A reply that is not an answer (e.g. the message was too long to store)."""
        await self.finish(text)

    def _typing_stop(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def _typing_loop(self) -> None:
        """Typing until the first token: over the WebSocket when connected (no REST call), else REST."""
        with contextlib.suppress(MattermostError, OSError):
            while True:
                ws = self.worker.ws
                if ws is not None:
                    try:
                        await ws.send(json.dumps({
                            "seq": self.worker._next_seq(), "action": "user_typing",
                            "data": {"channel_id": self.channel_id, "parent_id": self.root_id}}))
                    except Exception:
                        ws = None
                if ws is None:
                    await self.client.typing(user_id=self.worker.bot_user_id, channel_id=self.channel_id,
                                             parent_id=self.root_id)
                await asyncio.sleep(TYPING_EVERY_SECONDS)

    async def _progress(self) -> None:
        if self.queued:
            return
        now = time.monotonic()
        limit = parsing.MAX_POST_RUNES
        if not self.parts:
            if not self.full.strip():
                return
            await self._part_create(start=0, raw=self.full[:limit], final=False)
            self._last_edit = now
            return
        part = self.parts[-1]
        if not part.post_id:
            return
        fresh = len(self.full) - (part.start + part.raw_len)
        if now - self._last_edit < conf.edit_interval_seconds() or fresh < conf.edit_min_chars():
            return
        self._last_edit = now
        if len(self.full) - part.start > limit:
            # This post is full: settle it at a boundary and continue in a new one.
            window = self.full[part.start:part.start + limit - 16]
            cut = parsing._cut_point(window, len(window))
            await self._patch(part, self.full[part.start:part.start + cut], final=False)
            start = part.start + (part.raw_len or cut)
            part.frozen = True
            await self._part_create(start=start, raw=self.full[start:start + limit], final=False)
            return
        ok = await self._patch(part, self.full[part.start:], final=False)
        if not ok and part.frozen:
            start = part.start + part.raw_len
            await self._part_create(start=start, raw=self.full[start:start + limit], final=False)

    async def _patch(self, part: Part, raw: str, *, final: bool) -> bool:
        message = parsing.broadcast_neutralise(raw)
        try:
            await self.client.post_patch(part.post_id, message=message, props=self._props(part),
                                         retries=None if final else 0)
        except Unauthorized:
            raise
        except MattermostError as exc:
            if exc.error_id == EDIT_TIME_LIMIT:
                part.frozen = True  # continue in a new post
                return False
            if final:
                raise
            return False  # an intermediate edit: the next one carries the text
        part.raw_len, part.sent = len(raw), message
        return True

    async def _turn_in_channel(self) -> None:
        """Wait until the previous reply of this channel shows its first post (bounded: never stuck behind it)."""
        if self._after is not None and not self._after.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._after), ORDER_WAIT_SECONDS)
        self._after = None

    def _mark_shown(self) -> None:
        if self._shown is not None and not self._shown.done():
            self._shown.set_result(None)

    async def _part_create(self, *, start: int, raw: str, final: bool) -> Part:
        db = _db()
        if not self.parts:
            await self._turn_in_channel()
        message = parsing.broadcast_neutralise(raw)
        row = await db(_row_create, bot_id=self.bot_id, inbound_id=self.inbound.pk, turn_id=self.turn_id,
                       channel_id=self.channel_id, root_id=self.root_id, part=len(self.parts), text=message,
                       status=OutboxPost.Status.STREAMING if not final else OutboxPost.Status.PENDING)
        part = Part(row.pk, row.pending_post_id, start)
        self.parts.append(part)
        if self.queued:
            await db(_row_update, outbox_id=row.pk, status=OutboxPost.Status.PENDING, text=message)
            self._mark_shown()  # the outbox keeps the order from here
            return part
        await db(_row_update, outbox_id=row.pk, first_attempt_at=timezone.now(), attempts=1)
        try:
            post = await self.client.post_create(channel_id=self.channel_id, message=message, root_id=self.root_id,
                                                 props=self._props(part), pending_post_id=part.pending_post_id)
        except Unauthorized:
            raise
        except MattermostError as exc:
            logger.warning("bot %s: reply post not created (%s); queued in the outbox", self.bot_id, exc)
            self.queued = exc.retryable
            self._mark_shown()  # queued: the outbox keeps the order from here
            await db(_row_update, outbox_id=row.pk, text=message, last_error=str(exc)[:300],
                     status=OutboxPost.Status.PENDING if exc.retryable else OutboxPost.Status.FAILED,
                     next_attempt_at=timezone.now() + timedelta(seconds=1))
            return part
        part.post_id, part.raw_len, part.sent = post["id"], len(raw), message
        self._mark_shown()
        await db(_row_posted, outbox_id=row.pk, post_id=post["id"], text=message, done=final)
        return part

    async def finish(self, final: str) -> None:
        """Lay the final text out over the posts: patch the ones that can still change, create the rest."""
        db = _db()
        first_open = next((i for i, p in enumerate(self.parts) if not p.frozen), len(self.parts))
        pos = self.parts[first_open].start if first_open < len(self.parts) else (
            self.parts[-1].start + self.parts[-1].raw_len if self.parts else 0)
        while True:
            chunks = parsing.text_split(final[pos:]) if final[pos:].strip() else []
            restart = False
            for k, chunk in enumerate(chunks):
                index = first_open + k
                message = parsing.broadcast_neutralise(chunk)
                if index < len(self.parts):
                    part = self.parts[index]
                    if self.queued or not part.post_id:
                        await db(_row_update, outbox_id=part.outbox_id, text=message, status=OutboxPost.Status.PENDING,
                                 next_attempt_at=None)
                        continue
                    try:
                        ok = part.sent == message or await self._patch(part, chunk, final=True)
                    except MattermostError as exc:
                        logger.warning("bot %s: final edit failed (%s); queued", self.bot_id, exc)
                        await db(_row_update, outbox_id=part.outbox_id, text=message, status=OutboxPost.Status.PENDING,
                                 last_error=str(exc)[:300], next_attempt_at=timezone.now() + timedelta(seconds=1))
                        self.queued = True
                        continue
                    if not ok:  # the edit time limit: this post keeps what it shows; the rest goes on after it
                        await db(_row_update, outbox_id=part.outbox_id, status=OutboxPost.Status.SENT,
                                 sent_at=timezone.now())
                        pos = part.start + part.raw_len
                        first_open = index + 1
                        restart = True
                        break
                    await db(_row_update, outbox_id=part.outbox_id, text=message, status=OutboxPost.Status.SENT,
                             sent_at=timezone.now())
                else:
                    part = await self._part_create(start=pos, raw=chunk, final=True)
            if not restart:
                break
        # Posts the streaming layout made beyond the final one (rare): they keep their text.
        for part in self.parts[first_open + len(chunks):]:
            await db(_row_update, outbox_id=part.outbox_id, status=OutboxPost.Status.SENT, sent_at=timezone.now())
        if self.queued:
            self.worker.outbox_wakeup.set()


async def note_send(worker, *, inbound_id, channel_id: str, root_id: str, text: str) -> None:
    """A short post that is not an answer (e.g. "sent to you by DM"), through the outbox."""
    db = _db()
    row = await db(_row_create, bot_id=worker.bot_id, inbound_id=inbound_id, turn_id=None, channel_id=channel_id,
                   root_id=root_id, part=99, text=text, status=OutboxPost.Status.PENDING)
    if not await outbox_deliver(worker, row):
        worker.outbox_wakeup.set()


# --- the outbox ------------------------------------------------------------------------------------

def _due(*, bot_id: int) -> list[OutboxPost]:
    rows = OutboxPost.objects.filter(bot_id=bot_id, status=OutboxPost.Status.PENDING).select_related("inbound")
    return sorted(rows, key=lambda r: (r.inbound.create_at_ms if r.inbound else 0, str(r.inbound_id), r.part,
                                       r.created_at))


async def outbox_drain(worker) -> int:
    """Deliver waiting replies, oldest mention first; a channel stops at its first reply that cannot go yet,
    so replies reach each channel in order after an outage. Returns how many were delivered."""
    db = _db()
    blocked: set[str] = set()
    delivered = 0
    now = timezone.now()
    for row in await db(_due, bot_id=worker.bot_id):
        if row.channel_id in blocked:
            continue
        if row.next_attempt_at and row.next_attempt_at > now:
            blocked.add(row.channel_id)
            continue
        if await outbox_deliver(worker, row):
            delivered += 1
        else:
            blocked.add(row.channel_id)
    return delivered


async def _own_post_find(worker, row: OutboxPost) -> dict | None:
    """After the server's ~30 s de-duplication window: is our post already there (a lost response)?"""
    since = int(row.first_attempt_at.timestamp() * 1000) - 5000
    for post in await worker.client.channel_posts_since(row.channel_id, since):
        if post.get("user_id") == worker.bot_user_id and (post.get("props") or {}).get(MARKER) == row.pending_post_id \
                and not post.get("delete_at"):
            return post
    return None


async def outbox_deliver(worker, row: OutboxPost) -> bool:
    """One waiting reply post: create it (same pending_post_id) or apply its final edit. False = try later."""
    db = _db()
    client = worker.client
    props = {MARKER: row.pending_post_id, "mejai_turn": str(row.turn_id or ""), "mejai_part": str(row.part)}
    try:
        if row.post_id:
            try:
                await client.post_patch(row.post_id, message=row.text, props=props)
                post_id = row.post_id
            except MattermostError as exc:
                if exc.error_id != EDIT_TIME_LIMIT:
                    raise
                post = await client.post_create(channel_id=row.channel_id, message=row.text, root_id=row.root_id,
                                                props={**props, MARKER: row.pending_post_id + ":late"},
                                                pending_post_id=row.pending_post_id + ":late")
                post_id = post["id"]
        else:
            found = None
            first = row.first_attempt_at
            if first is not None and (timezone.now() - first).total_seconds() > conf.look_before_repost_seconds():
                found = await _own_post_find(worker, row)
            if first is None:
                await db(_row_update, outbox_id=row.pk, first_attempt_at=timezone.now())
            if found is not None:
                post_id = found["id"]
                if found.get("message") != row.text:
                    await client.post_patch(post_id, message=row.text, props=props)
            else:
                post = await client.post_create(channel_id=row.channel_id, message=row.text, root_id=row.root_id,
                                                props=props, pending_post_id=row.pending_post_id)
                post_id = post["id"]
    except Unauthorized:
        raise
    except MattermostError as exc:
        attempts = row.attempts + 1
        if exc.retryable:
            delay = min(conf.outbox_retry_max_seconds(), conf.http_backoff_seconds() * (2 ** min(attempts, 10)))
            await db(_row_update, outbox_id=row.pk, attempts=attempts, last_error=str(exc)[:300],
                     next_attempt_at=timezone.now() + timedelta(seconds=delay))
            return False
        await db(_row_update, outbox_id=row.pk, attempts=attempts, last_error=str(exc)[:300],
                 status=OutboxPost.Status.FAILED)
        return True
    await db(_row_posted, outbox_id=row.pk, post_id=post_id, text=row.text, done=True)
    await db(_row_update, outbox_id=row.pk, attempts=row.attempts + 1)
    return True


# --- after a restart --------------------------------------------------------------------------------

def _recovery_plan(*, inbound_id: int) -> tuple[str, str]:
    """(what to do, final text): "answer" again, "deliver" a finished answer, or "note" an interrupted one."""
    inbound = InboundPost.objects.select_related("turn").get(pk=inbound_id)
    turn = inbound.turn
    if turn is None or turn.status == Turn.Status.PENDING:
        return "answer", ""
    if turn.status == Turn.Status.COMPLETED:
        return "deliver", turn.reply_text
    if turn.status in (Turn.Status.FAILED, Turn.Status.INTERRUPTED):
        text = turn.reply_text or ""
        return "deliver", (text.rstrip() + ERROR_NOTE) if text.strip() else ERROR_ONLY
    return "note", (turn.reply_text or "").rstrip() + INTERRUPTED_NOTE


def _rows_of(*, inbound_id: int) -> list[OutboxPost]:
    return list(OutboxPost.objects.filter(inbound_id=inbound_id).order_by("part", "created_at"))


async def recover(worker, inbound: InboundPost) -> None:
    """A post the previous worker accepted but did not finish."""
    from mchat import services
    from mchat.worker import db

    plan, text = await db(_recovery_plan, inbound_id=inbound.pk)
    if plan == "answer":
        try:
            post = await worker.client.request("GET", f"/posts/{inbound.post_id}")
        except MattermostError as exc:
            logger.warning("bot %s: cannot re-read post %s (%s)", worker.bot_id, inbound.post_id, exc.status)
            return
        mapping = await worker.channel_learn(inbound.channel_id)
        decoded = parsing.post_decode(post)
        if mapping is None or decoded is None:
            return
        await worker._answer_guarded(inbound, decoded, mapping)
        return
    rows = await db(_rows_of, inbound_id=inbound.pk)
    chunks = [parsing.broadcast_neutralise(c) for c in parsing.text_split(text)] if text.strip() else []
    channel_id = inbound.channel_id
    root_id = rows[0].root_id if rows else (inbound.root_id or inbound.post_id)
    if not rows:
        mapping = await worker.channel_learn(channel_id)
        if mapping is not None and mapping.channel_type == "D":
            root_id = inbound.root_id
    for index, chunk in enumerate(chunks):
        if index < len(rows):
            if rows[index].status != OutboxPost.Status.SENT or rows[index].text != chunk:
                await db(_row_update, outbox_id=rows[index].pk, text=chunk, status=OutboxPost.Status.PENDING,
                         next_attempt_at=None)
        else:
            await db(_row_create, bot_id=worker.bot_id, inbound_id=inbound.pk, turn_id=None, channel_id=channel_id,
                     root_id=root_id, part=index, text=chunk, status=OutboxPost.Status.PENDING)
    await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.ANSWERED, reason="recovered")
    worker.outbox_wakeup.set()


__all__ = ["ReplyStream", "outbox_drain", "outbox_deliver", "recover"]
