"""What a socket sends on resume: the backlog after `last_seq`, with finished turns whole from the
database, or a `snapshot` when the backlog no longer reaches back that far (docs/assistant.md)."""

from __future__ import annotations

from assistant import backlog
from assistant.models import ClientTurn
from assistant.sync import db
from runtime.models import Turn

SNAPSHOT_TURNS = 20


def _stored_replies(turn_ids: list[str]) -> dict[str, tuple[str, str]]:
    """turn id -> (reply text, status) of finished turns, as stored."""
    rows = Turn.objects.filter(pk__in=turn_ids).values_list("id", "reply_text", "status")
    return {str(pk): (text, status) for pk, text, status in rows if status in Turn.FINISHED}


def _recent_turns(client_pk: int) -> list[dict]:
    entries = (ClientTurn.objects.filter(client_id=client_pk).select_related("turn", "turn__session__agent")
               .order_by("-id")[:SNAPSHOT_TURNS])
    turns = []
    for entry in reversed(list(entries)):
        turn = entry.turn
        turns.append({"turn_id": str(turn.id), "id": entry.message_id or None, "message": turn.user_text,
                      "agent_name": turn.session.agent.name, "content": turn.reply_text, "status": turn.status,
                      "error_code": turn.error_code or None})
    return turns


async def _collapse(frames: list[dict]) -> list[dict]:
    """Turns that start and end within `frames` become start + one response (the stored reply) + end."""
    started = {f["turn_id"] for f in frames if f.get("type") == "start"}
    ended = {f["turn_id"] for f in frames if f.get("type") in ("end", "error") and f.get("turn_id")}
    whole = started & ended
    if not whole:
        return frames
    stored = await db(_stored_replies)(sorted(whole))
    last_response = {}
    for frame in frames:
        if frame.get("type") == "response" and frame.get("turn_id") in whole:
            last_response[frame["turn_id"]] = frame["seq"]
    result = []
    for frame in frames:
        turn_id = frame.get("turn_id")
        if frame.get("type") != "response" or turn_id not in whole:
            result.append(frame)
            continue
        if frame["seq"] != last_response[turn_id]:
            continue
        pieces = "".join(f["content"] for f in frames if f.get("type") == "response" and f.get("turn_id") == turn_id)
        text = stored[turn_id][0] if turn_id in stored else pieces
        result.append({**frame, "content": text})
    return result


async def resume_frames(*, client_id: str, client_pk: int, last_seq: int) -> list[dict]:
    """The frames a socket that has seen up to `last_seq` is missing, in seq order."""
    frames, complete = await backlog.frames_after(client_id=client_id, after=last_seq)
    if complete:
        return await _collapse(frames)
    snap = await backlog.snapshot_read(client_id=client_id)
    turns = await db(_recent_turns)(client_pk)
    snapshot = {"type": "snapshot", "seq": snap["seq"], "turn_id": snap["turn_id"], "content": snap["content"],
                "status": snap["status"], "turns": turns}
    later, _ = await backlog.frames_after(client_id=client_id, after=snap["seq"])
    return [snapshot, *later]
