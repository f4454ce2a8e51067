"""Reading Mattermost posts: decoding, which posts the bot must ignore, mentions as Mattermost parses them,
and splitting long answers into posts (pure functions, no database)."""

from __future__ import annotations

import json
import re

MAX_POST_RUNES = 16383
BROADCAST_WORDS = ("channel", "all", "here")

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_USERNAME_CHARS = re.compile(r"[A-Za-z0-9._\-]+")
_BROADCAST = re.compile(r"(?<![A-Za-z0-9._\-@])@(channel|all|here)\b", re.I)


def post_decode(value) -> dict | None:
    """`posted`/`post_edited` carry the post as a JSON string; REST as an object. None when unusable."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value.get("id"):
        return None
    if not isinstance(value.get("channel_id"), str) or not value["channel_id"]:
        return None
    value.setdefault("message", "")
    if not isinstance(value["message"], str):
        return None
    if not isinstance(value.get("props"), dict):
        value["props"] = {}
    return value


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def ignore_reason(post: dict, *, bot_user_id: str) -> str | None:
    """Why the bot must not answer this post, or None. Never decided by emoji prefixes or sender_name."""
    props = post.get("props") or {}
    if post.get("user_id") == bot_user_id:
        return "own_post"
    if _truthy(props.get("from_webhook")):
        return "from_webhook"
    if _truthy(props.get("from_bot")):
        return "from_bot"
    if _truthy(props.get("from_plugin")):
        return "from_plugin"
    post_type = post.get("type") or ""
    if post_type.startswith("system_"):
        return "system_post"
    if post_type and post_type != "me":
        return "custom_post"
    if post.get("delete_at"):
        return "deleted"
    if not (post.get("message") or "").strip():
        return "empty"
    return None


def code_strip(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out (mentions there do not count);
    offsets are kept, so positions found in the result are positions in `text`."""
    out, fence = [], None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group("fence")
            out.append(" " * len(line))
            continue
        if fence is not None:
            if match and match.group("fence")[0] == fence[0] and len(match.group("fence")) >= len(fence) \
                    and not match.group("info").strip():
                fence = None
            out.append(" " * len(line))
            continue
        out.append(line)
    return _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), "\n".join(out))


def _mention_spans(text: str, name: str):
    """(start, end) of each @name mention: after a non-word character, the username's characters,
    trailing . - _ trimmed like Mattermost does ("@ai." and "(@ai)" mention ai; "@aiden", "x@ai.com" do not)."""
    name = name.lower().lstrip("@")
    if not name:
        return
    for at in [i for i, ch in enumerate(text) if ch == "@"]:
        before = text[at - 1] if at else ""
        if before and (before.isalnum() or before in "._-@"):
            continue
        match = _USERNAME_CHARS.match(text, at + 1)
        if not match:
            continue
        word = match.group(0)
        trimmed = word.rstrip("._-")
        if trimmed.lower() == name:
            yield at, at + 1 + len(trimmed)


def mentions(text: str, name: str) -> bool:
    """Whether `text` mentions @name outside code (whole word, as Mattermost parses it)."""
    return any(True for _ in _mention_spans(code_strip(text), name))


def mention_remove(text: str, name: str) -> str:
    """The message without the bot's mentions (outside code), trimmed: "@ai /remember x" -> "/remember x"."""
    for start, end in reversed(list(_mention_spans(code_strip(text), name))):
        text = text[:start] + text[end:]
    text = re.sub(r"^[\s,:;]+", "", text)
    return text.strip()


def broadcast_neutralise(text: str) -> str:
    """@channel/@all/@here in model output would notify everyone: break them with a zero-width joiner."""
    return _BROADCAST.sub(lambda m: "@\u200b" + m.group(1), text)


def text_split(text: str, *, limit: int = MAX_POST_RUNES) -> list[str]:
    """Split an answer into posts of at most `limit` characters (runes), at paragraph boundaries,
    else line boundaries, else hard; a code fence cut between posts is closed and re-opened."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    reopen = ""
    while rest:
        budget = limit - len(reopen)
        if len(rest) <= budget:
            parts.append(reopen + rest)
            break
        head = rest[:budget]
        fence_close_room = 8  # "\n```" plus margin for the closing fence
        cut = _cut_point(head, budget - fence_close_room)
        chunk, rest = head[:cut], rest[cut:]
        open_fence = _open_fence(reopen + chunk)
        body = reopen + chunk
        if open_fence is not None:
            body = body.rstrip("\n") + "\n" + open_fence[0] + "\n"
            reopen = open_fence[0] + open_fence[1] + "\n"
            rest = rest.lstrip("\n")
        else:
            reopen = ""
            rest = rest.lstrip("\n")
        parts.append(body.rstrip() if open_fence is None else body)
    return [p for p in parts if p.strip()]


def _cut_point(head: str, room: int) -> int:
    room = max(1, room)
    window = head[:room]
    for separator in ("\n\n", "\n"):
        index = window.rfind(separator)
        if index > room // 2:
            return index + len(separator)
    index = window.rfind(" ")
    if index > room // 2:
        return index + 1
    return room


def _open_fence(text: str) -> tuple[str, str] | None:
    """(fence, info) of a code block left open at the end of text, else None."""
    fence = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if not match:
            continue
        if fence is None:
            fence = (match.group("fence"), match.group("info").strip())
        elif match.group("fence")[0] == fence[0][0] and len(match.group("fence")) >= len(fence[0]) \
                and not match.group("info").strip():
            fence = None
    return fence


def fences_balanced(text: str) -> bool:
    return _open_fence(text) is None
