"""Kakao skill response JSON: the callback acknowledgement, and answers shaped for Kakao's limits.

Kakao shows plain text: markdown is flattened, the text is split into 1–3 `simpleText` bubbles of
≤ 1000 characters (never empty), quick replies are capped at 10 with labels ≤ 14 characters, and
the whole body stays under 30 KB.
"""

from __future__ import annotations

import json
import re

MAX_OUTPUTS = 3
MAX_BUBBLE_CHARS = 1000
MAX_QUICK_REPLIES = 10
MAX_LABEL_CHARS = 14
MAX_MESSAGE_TEXT_CHARS = 1000
MAX_BODY_BYTES = 30 * 1024
ELLIPSIS = "…"
EMPTY_FALLBACK = "답변을 준비하지 못했어요. 다시 한 번 말씀해 주세요."

_FENCE = re.compile(r"```[^\n]*\n?(.*?)```", re.S)
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)[^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.M)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])|(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_QUOTE = re.compile(r"^\s{0,3}>\s?", re.M)
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$", re.M)
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.M)
_BLANKS = re.compile(r"\n{3,}")


def text_plain(text: str) -> str:
    """Flatten markdown to the plain text Kakao displays."""
    text = (text or "").replace("\r\n", "\n")
    text = _FENCE.sub(lambda m: m.group(1).strip("\n"), text)
    text = _IMAGE.sub(lambda m: m.group(1) or m.group(2), text)
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text)
    text = _RULE.sub("", text)
    text = _TABLE_SEP.sub("", text)
    text = _HEADING.sub("", text)
    text = _BOLD.sub(lambda m: m.group(2), text)
    text = _STRIKE.sub(lambda m: m.group(1), text)
    text = _ITALIC.sub(lambda m: m.group(1) or m.group(2), text)
    text = _CODE.sub(lambda m: m.group(1), text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _QUOTE.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split text at the best boundary at or before `limit`: paragraph, line, sentence, space."""
    if len(text) <= limit:
        return text, ""
    window = text[:limit]
    for sep in ("\n\n", "\n", ". ", "? ", "! ", "다. ", "요. ", " "):
        at = window.rfind(sep)
        if at >= limit // 2:
            end = at + len(sep)
            return text[:end].rstrip(), text[end:].lstrip()
    return window, text[limit:]


def bubbles_split(text: str, *, max_bubbles: int = MAX_OUTPUTS, limit: int = MAX_BUBBLE_CHARS) -> list[str]:
    """Up to `max_bubbles` non-empty pieces of ≤ `limit` characters; overflow ends with an ellipsis."""
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    rest = text
    while rest and len(pieces) < max_bubbles:
        piece, rest = _cut(rest, limit)
        if piece:
            pieces.append(piece)
    if rest:
        last = pieces[-1]
        pieces[-1] = (last[: limit - 1].rstrip() if len(last) >= limit else last.rstrip()) + ELLIPSIS
    return pieces


def quick_replies_kakao(replies: list[dict] | None) -> list[dict]:
    """Runtime quick replies [{label, message}] as Kakao quick replies (≤ 10, labels ≤ 14 chars)."""
    result, seen = [], set()
    for reply in replies or []:
        if not isinstance(reply, dict):
            continue
        label = text_plain(str(reply.get("label") or "")).replace("\n", " ").strip()
        message = str(reply.get("message") or label).strip()
        if not label or not message:
            continue
        if len(label) > MAX_LABEL_CHARS:
            label = label[: MAX_LABEL_CHARS - 1].rstrip() + ELLIPSIS
        if label in seen:
            continue
        seen.add(label)
        result.append({"label": label, "action": "message", "messageText": message[:MAX_MESSAGE_TEXT_CHARS]})
        if len(result) == MAX_QUICK_REPLIES:
            break
    return result


def response_build(texts: list[str], *, quick_replies: list[dict] | None = None) -> dict:
    """A skill response (also the callback body) for one or more messages, earliest first.

    Every message keeps at least one bubble; the last message gets what is left of the three.
    """
    texts = [text_plain(t) for t in texts if t and text_plain(t)]
    if not texts:
        texts = [EMPTY_FALLBACK]
    texts = texts[-MAX_OUTPUTS:]
    outputs: list[str] = []
    for index, text in enumerate(texts):
        remaining_slots = MAX_OUTPUTS - len(outputs) - (len(texts) - index - 1)
        outputs.extend(bubbles_split(text, max_bubbles=max(1, remaining_slots)))
    body = {
        "version": "2.0",
        "template": {"outputs": [{"simpleText": {"text": t}} for t in outputs[:MAX_OUTPUTS]]},
    }
    kakao_replies = quick_replies_kakao(quick_replies)
    if kakao_replies:
        body["template"]["quickReplies"] = kakao_replies
    while body_size(body) > MAX_BODY_BYTES and kakao_replies:
        kakao_replies.pop()
        body["template"]["quickReplies"] = kakao_replies
    while body_size(body) > MAX_BODY_BYTES:
        last = body["template"]["outputs"][-1]["simpleText"]
        last["text"] = last["text"][: max(1, len(last["text"]) // 2)] + ELLIPSIS
    return body


def body_size(body: dict) -> int:
    return len(json.dumps(body, ensure_ascii=False).encode())


def acknowledgement(text: str) -> dict:
    """The immediate answer that tells Kakao the real one comes through the callback."""
    return {"version": "2.0", "useCallback": True, "data": {"text": text}}


def skill_response_problems(body) -> list[str]:
    """What makes `body` not a valid skill response per Kakao's format ([] when valid).

    Either the callback acknowledgement ({"version": "2.0", "useCallback": true, "data": {"text"}},
    no template) or a template of 1–3 non-empty simpleText bubbles of ≤ 1000 characters, ≤ 10 quick
    replies with labels ≤ 14 characters, the whole ≤ 30 KB. Used by tests and bench/bench_kakao.py.
    """
    if not isinstance(body, dict):
        return ["not a JSON object"]
    problems = []
    if body.get("version") != "2.0":
        problems.append("version is not 2.0")
    if body_size(body) > MAX_BODY_BYTES:
        problems.append("over 30 KB")
    if body.get("useCallback") is True:
        if "template" in body:
            problems.append("useCallback with a template")
        if not isinstance((body.get("data") or {}).get("text"), str):
            problems.append("useCallback without data.text")
        return problems
    outputs = (body.get("template") or {}).get("outputs")
    if not isinstance(outputs, list) or not 1 <= len(outputs) <= MAX_OUTPUTS:
        return problems + ["template.outputs must hold 1-3 components"]
    for output in outputs:
        text = (output.get("simpleText") or {}).get("text") if isinstance(output, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_BUBBLE_CHARS:
            problems.append("a simpleText bubble is empty, missing or over 1000 characters")
    replies = body["template"].get("quickReplies", [])
    if len(replies) > MAX_QUICK_REPLIES or any(len(r.get("label", "")) > MAX_LABEL_CHARS or
                                                r.get("action") not in ("message", "block") for r in replies):
        problems.append("quickReplies over the limits")
    return problems
