"""The channel-neutral turn event contract (version 1) and its SSE encoding.

Every channel maps these to its own wire format; see docs/runtime-events.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

EVENTS_VERSION = 1


@dataclass(frozen=True, slots=True)
class TurnEvent:
    type: str  # start | delta | message | error
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"type": self.type, "v": EVENTS_VERSION, **self.data}


def event_start(*, session_id, turn_id, seq: int, replayed: bool = False) -> TurnEvent:
    return TurnEvent("start", {"session_id": str(session_id), "turn_id": str(turn_id), "seq": seq, "replayed": replayed})


def event_delta(*, turn_id, text: str, index: int) -> TurnEvent:
    return TurnEvent("delta", {"turn_id": str(turn_id), "text": text, "index": index})


def event_message(payload: dict) -> TurnEvent:
    return TurnEvent("message", payload)


def event_error(*, code: str, message: str, session_id=None, turn_id=None, retryable: bool = False) -> TurnEvent:
    from mejai.error_messages import message_bilingual

    return TurnEvent(
        "error",
        {
            "code": code,
            "message": message_bilingual(code, message),
            "session_id": str(session_id) if session_id else None,
            "turn_id": str(turn_id) if turn_id else None,
            "retryable": retryable,
        },
    )


def sse_encode(event: TurnEvent, *, event_id: str | int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event.type}")
    lines.append("data: " + json.dumps(event.as_dict(), ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


SSE_KEEPALIVE = ": keep-alive\n\n"
