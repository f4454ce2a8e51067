"""The ordered frame log of each client_id: `seq` numbers, the resume backlog and the snapshot.

A stream frame gets its `seq` and is appended to the log in one atomic step, *before* it is
published, so the log is the truth every socket can fill a gap from (docs/assistant.md). With
Redis (REDIS_URL) the log is a capped stream with a TTL, shared by every process; without it an
in-memory equivalent serves the embedded single process.

    await frame_append(client_id=…, frame={...}) -> frame with "seq"
    await frames_after(client_id=…, after=N) -> (frames, complete)   complete=False: trimmed
    await snapshot_read(client_id=…) -> {"seq", "turn_id", "content", "status"}
    await seq_current(client_id=…) -> int
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings

from assistant import conf

SEQ_TTL_SECONDS = 30 * 24 * 3600  # outlives the log, so a client's seq never restarts while it is in use

_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '0-' .. seq, 'f', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[6])
local kind = ARGV[2]
if kind == 'start' then
  redis.call('HSET', KEYS[3], 'turn_id', ARGV[3], 'status', 'streaming', 'seq', seq)
  redis.call('SET', KEYS[4], '', 'EX', ARGV[6])
elseif kind == 'response' and ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'seq', seq)
  redis.call('APPEND', KEYS[4], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[6])
elseif (kind == 'end' or kind == 'error') and ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'status', ARGV[8], 'seq', seq)
end
redis.call('EXPIRE', KEYS[3], ARGV[6])
if #KEYS >= 5 then
  -- the client's channel-layer group, read in the same trip: who is there to publish to
  return {seq, redis.call('ZRANGE', KEYS[5], 0, -1)}
end
return seq
"""


def _stored(frame: dict) -> str:
    return json.dumps({k: v for k, v in frame.items() if k != "seq"}, ensure_ascii=False, separators=(",", ":"))


def _terminal_status(frame: dict) -> str:
    if frame.get("type") == "end":
        return "stopped" if frame.get("stopped") else "completed"
    return "failed"


# --- Redis ------------------------------------------------------------------------------------

_redis_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> client


def redis_client():
    """This event loop's asyncio Redis client (REDIS_URL)."""
    import redis.asyncio as redis_asyncio

    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        # A blocking pool: past its size a command waits for a connection (redis-py 8's default
        # pool fails at once past 100, which lost frames of 100 clients streaming together).
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=conf.redis_connections(), timeout=30)
        client = _redis_clients[loop] = redis_asyncio.Redis(connection_pool=pool)
    return client


def key(client_id: str, name: str) -> str:
    """The Redis key `name` of a client_id (`seq`, `log`, `cur`, `text`; the driver's lock, `driver`)."""
    return f"{getattr(settings, 'CHANNEL_PREFIX', None) or 'mejai'}:assistant:{client_id}:{name}"


def _keys(client_id: str) -> list[str]:
    return [key(client_id, "seq"), key(client_id, "log"), key(client_id, "cur"), key(client_id, "text")]


async def _redis_append(client_id: str, frame: dict, group_key: bytes | None = None):
    keys = _keys(client_id) + ([group_key] if group_key else [])
    args = [_stored(frame), frame.get("type", ""), frame.get("turn_id") or "", frame.get("content") or "",
            conf.backlog_frames(), conf.backlog_seconds(), SEQ_TTL_SECONDS, _terminal_status(frame)]
    result = await redis_client().eval(_APPEND, len(keys), *keys, *args)
    if group_key:
        seq, members = result
        return int(seq), [m.decode() if isinstance(m, bytes) else m for m in members]
    return int(result)


async def _redis_after(client_id: str, after: int, limit: int) -> tuple[list[dict], int]:
    seq_key, log_key, _, _ = _keys(client_id)
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.get(seq_key)
        pipe.xrange(log_key, f"0-{after + 1}", "+", count=limit)
        current, entries = await pipe.execute()
    frames = []
    for entry_id, fields in entries:
        frame = json.loads(fields[b"f"])
        frame["seq"] = int(entry_id.decode().split("-", 1)[1])
        frames.append(frame)
    return frames, int(current or 0)


async def _redis_snapshot(client_id: str) -> dict:
    seq_key, _, cur_key, text_key = _keys(client_id)
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.get(seq_key)
        pipe.hgetall(cur_key)
        pipe.get(text_key)
        current, cur, text = await pipe.execute()
    cur = {k.decode(): v.decode() for k, v in (cur or {}).items()}
    return {"seq": int(current or 0), "turn_id": cur.get("turn_id") or None,
            "content": (text or b"").decode(), "status": cur.get("status") or None}


# --- in memory (embedded default: one process) ----------------------------------------------


@dataclass
class _MemoryLog:
    seq: int = 0
    frames: deque = field(default_factory=deque)  # (seq, stored json, appended at)
    turn_id: str | None = None
    text: str = ""
    status: str | None = None


_memory: dict[str, _MemoryLog] = {}
_memory_lock = threading.Lock()  # in-process jobs append from worker threads too


def _memory_trim(log: _MemoryLog, now: float) -> None:
    limit, ttl = conf.backlog_frames(), conf.backlog_seconds()
    while log.frames and (len(log.frames) > limit or now - log.frames[0][2] > ttl):
        log.frames.popleft()


def _memory_append(client_id: str, frame: dict) -> int:
    with _memory_lock:
        log = _memory.setdefault(client_id, _MemoryLog())
        log.seq += 1
        now = time.monotonic()
        log.frames.append((log.seq, _stored(frame), now))
        _memory_trim(log, now)
        kind, turn_id = frame.get("type"), frame.get("turn_id")
        if kind == "start":
            log.turn_id, log.text, log.status = turn_id, "", "streaming"
        elif kind == "response" and turn_id:
            log.text += frame.get("content") or ""
        elif kind in ("end", "error") and turn_id:
            log.status = _terminal_status(frame)
        return log.seq


def _memory_after(client_id: str, after: int, limit: int) -> tuple[list[dict], int]:
    with _memory_lock:
        log = _memory.get(client_id)
        if log is None:
            return [], 0
        _memory_trim(log, time.monotonic())
        frames = []
        for seq, stored, _ in log.frames:
            if seq > after:
                frame = json.loads(stored)
                frame["seq"] = seq
                frames.append(frame)
                if len(frames) >= limit:
                    break
        return frames, log.seq


def _memory_snapshot(client_id: str) -> dict:
    with _memory_lock:
        log = _memory.get(client_id) or _MemoryLog()
        return {"seq": log.seq, "turn_id": log.turn_id, "content": log.text, "status": log.status}


# --- the API ----------------------------------------------------------------------------------


async def frame_append(*, client_id: str, frame: dict) -> dict:
    """Give `frame` the client's next seq and keep it in the log; returns the frame with `seq`."""
    if settings.REDIS_URL:
        seq = await _redis_append(client_id, frame)
    else:
        seq = _memory_append(client_id, frame)
    return {**frame, "seq": seq}


async def frame_append_members(*, client_id: str, frame: dict, group_key: bytes) -> tuple[dict, list[str]]:
    """frame_append (Redis only), also reading the channel names in the sorted set `group_key`
    (a channels_redis group) in the same round trip: (frame with seq, channel names)."""
    seq, members = await _redis_append(client_id, frame, group_key)
    return {**frame, "seq": seq}, members


async def frames_after(*, client_id: str, after: int, limit: int = 100_000) -> tuple[list[dict], bool]:
    """Frames with seq > `after`, in order; complete=False when some of them are gone (trimmed,
    expired, or `after` is not a seq this client has had)."""
    if settings.REDIS_URL:
        frames, current = await _redis_after(client_id, after, limit)
    else:
        frames, current = _memory_after(client_id, after, limit)
    if after > current:
        return frames, False
    if after == current:
        return frames, True
    return frames, bool(frames) and frames[0]["seq"] == after + 1


async def snapshot_read(*, client_id: str) -> dict:
    """The latest turn's state at the current seq: {"seq", "turn_id", "content" so far, "status"}."""
    if settings.REDIS_URL:
        return await _redis_snapshot(client_id)
    return _memory_snapshot(client_id)


async def seq_current(*, client_id: str) -> int:
    if settings.REDIS_URL:
        value = await redis_client().get(_keys(client_id)[0])
        return int(value or 0)
    with _memory_lock:
        log = _memory.get(client_id)
        return log.seq if log else 0
