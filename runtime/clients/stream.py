"""Assembly of an OpenAI-compatible chat completion stream as real servers send it.

`ChatStreamAssembler` reads the SSE lines of `POST /chat/completions` with `stream: true` and
turns them into visible text, tool calls, usage and how the stream ended. It is written for the
shapes servers actually send, not only the documented one:

* text: `delta.content` (a string, null, or missing); chunks with `choices: []` (Azure's
  prompt-filter results, the usage chunk) and keep-alive comments are skipped;
* reasoning: `delta.reasoning_content` (DeepSeek, vLLM), `delta.reasoning` (vLLM ≥ 0.9,
  Ollama, OpenRouter) and `<think>…</think>` / `<thinking>…</thinking>` blocks inside the text,
  with the tags split across deltas at any character — never part of the visible text;
* tool calls: deltas keyed by `index`, by `id`, or by neither (a continuation of the last one);
  an index reused for a new call (a new `id`, or a new name after complete arguments); the
  name late, repeated, or missing; arguments in fragments, repeated whole, as a JSON object
  instead of a string, or JSON-encoded twice;
* the end: a `finish_reason` on any choice chunk (the server said it finished), `data: [DONE]`,
  and `data: {"error": …}` sent mid-stream (vLLM, OpenRouter, LiteLLM).

A call that cannot be used becomes a warning dict (`{"code", "tool", "detail"}`), kept on the
turn for operators; see docs/model-compatibility.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import orjson

from runtime.storage import storage_text

# Characters a model stream may carry that no channel should show or store (C0/C1 controls
# except tab and newline; NUL is also what PostgreSQL refuses).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_OPEN_TAGS = ("<think>", "<thinking>")
_CLOSE_FOR = {"<think>": "</think>", "<thinking>": "</thinking>"}
_ALL_CLOSE = ("</think>", "</thinking>")


def _partial_tag_tail(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is a proper prefix of one of `tags`."""
    longest = 0
    for tag in tags:
        for size in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:size]):
                longest = size
                break
    return longest


class ReasoningSplitter:
    """Separates `<think>` blocks from visible text as it streams; tags may split anywhere.

    `feed(text)` returns the visible part that is safe to show now; a possible partial tag at the
    end is held back until the next feed. A `</think>` without its opening tag (templates that
    put `<think>` in the prompt, e.g. DeepSeek-R1 distills) means everything visible before it
    was reasoning: `stray_close` is set and `visible` restarts after it.
    """

    def __init__(self):
        self._buffer = ""
        self._close: str | None = None  # the closing tag awaited while inside a block
        self.visible = ""  # all visible text so far (authoritative, after stray-close handling)
        self.reasoning_chars = 0
        self.stray_close = False

    def feed(self, text: str) -> str:
        if self._close is None and not self._buffer and "<" not in text:
            self.visible += text  # no tag and nothing held back: all of it is visible (the common case)
            return text
        self._buffer += text
        out: list[str] = []
        while self._buffer:
            if self._close is None:
                found = [(self._buffer.find(tag), tag) for tag in _OPEN_TAGS + _ALL_CLOSE]
                found = [(pos, tag) for pos, tag in found if pos >= 0]
                if not found:
                    keep = _partial_tag_tail(self._buffer, _OPEN_TAGS + _ALL_CLOSE)
                    ready, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
                    out.append(ready)
                    break
                pos, tag = min(found, key=lambda item: (item[0], -len(item[1])))
                out.append(self._buffer[:pos])
                self._buffer = self._buffer[pos + len(tag) :]
                if tag in _ALL_CLOSE:
                    # Reasoning without its opening tag: what came before was not the answer.
                    self.stray_close = True
                    self.reasoning_chars += len(self.visible) + sum(len(part) for part in out)
                    self.visible, out = "", []
                else:
                    self._close = _CLOSE_FOR[tag]
            else:
                pos = self._buffer.find(self._close)
                if pos < 0:
                    keep = _partial_tag_tail(self._buffer, (self._close,))
                    self.reasoning_chars += len(self._buffer) - keep
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    break
                self.reasoning_chars += pos
                self._buffer = self._buffer[pos + len(self._close) :]
                self._close = None
        shown = "".join(out)
        self.visible += shown
        return shown

    def flush(self) -> str:
        """At the end of the stream: a held-back partial tag was text after all (unless inside a block)."""
        rest, self._buffer = self._buffer, ""
        if self._close is not None:
            self.reasoning_chars += len(rest)
            return ""
        self.visible += rest
        return rest


@dataclass
class ToolCallSlot:
    index: int | None
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass
class AssembledToolCall:
    name: str
    arguments: dict


@dataclass
class StreamState:
    finish_reason: str | None = None
    done: bool = False  # `data: [DONE]` was read
    usage: tuple[int | None, int | None] | None = None
    error: dict | None = None  # `data: {"error": …}` mid-stream
    warnings: list[dict] = field(default_factory=list)
    skipped_lines: int = 0  # data lines that were not JSON


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _json_loads(text: str | bytes):
    """orjson (a fraction of json's cost per chunk); json's leniencies (NaN, Infinity, integers past
    64 bits) as the fallback, so a line either parser accepts is read the same as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _json_complete(text: str) -> bool:
    try:
        _json_loads(text)
    except (ValueError, TypeError):
        return False
    return True


class ChatStreamAssembler:
    """Feed it SSE lines; it returns visible text to stream now; `finish()` gives tool calls."""

    def __init__(self, *, tool_names: frozenset[str] = frozenset()):
        self.tool_names = tool_names
        self.reasoning = ReasoningSplitter()
        self.state = StreamState()
        self._slots: list[ToolCallSlot] = []

    # --- lines and chunks ----------------------------------------------------------------
    def feed_line(self, line: str) -> str:
        """One line of the SSE body; the visible text it adds (may be "")."""
        if not line.startswith("data:"):
            return ""  # blank separators, `: keep-alive` comments, `event:`/`id:` fields
        data = line[5:].strip()
        if not data:
            return ""
        if data == "[DONE]":
            self.state.done = True
            return ""
        try:
            chunk = _json_loads(data)
        except ValueError:
            self.state.skipped_lines += 1
            return ""
        if not isinstance(chunk, dict):
            self.state.skipped_lines += 1
            return ""
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: dict) -> str:
        if chunk.get("error"):
            error = chunk["error"]
            self.state.error = error if isinstance(error, dict) else {"message": str(error)}
            return ""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.state.usage = (_int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens")))
        shown: list[str] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue  # one answer is asked for (n=1); other choices are ignored
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            for name in ("reasoning_content", "reasoning"):
                value = delta.get(name)
                if isinstance(value, str):
                    self.reasoning.reasoning_chars += len(value)
            content = delta.get("content")
            if isinstance(content, list):  # content parts: [{"type": "text", "text": …}]
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            if isinstance(content, str) and content:
                shown.append(self.reasoning.feed(storage_text(_CONTROL.sub("", content))))
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for item in tool_calls:
                    if isinstance(item, dict):
                        self._tool_call_delta(item)
            elif isinstance(delta.get("function_call"), dict):  # the legacy single function call
                self._tool_call_delta({"function": delta["function_call"]})
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.state.finish_reason = reason
        return "".join(shown)

    # --- tool calls --------------------------------------------------------------------
    def _tool_call_delta(self, item: dict) -> None:
        index = _int_or_none(item.get("index"))
        call_id = item.get("id") if isinstance(item.get("id"), str) and item.get("id") else None
        function = item.get("function") if isinstance(item.get("function"), dict) else {}
        name = function.get("name") if isinstance(function.get("name"), str) else ""
        arguments = function.get("arguments")
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments, ensure_ascii=False)
        elif not isinstance(arguments, str):
            arguments = ""

        slot = self._slot_for(index=index, call_id=call_id, name=name, arguments=arguments)
        if call_id and not slot.id:
            slot.id = call_id
        if name and not slot.name:
            slot.name = name
        if arguments:
            if slot.arguments and _json_complete(slot.arguments) and _json_complete(arguments):
                # The whole arguments sent again (some servers repeat them in every delta).
                slot.arguments = arguments
            else:
                slot.arguments += arguments

    def _slot_for(self, *, index: int | None, call_id: str | None, name: str, arguments: str) -> ToolCallSlot:
        if call_id:
            for slot in self._slots:
                if slot.id == call_id:
                    return slot
        candidate = None
        if index is not None:
            candidate = next((s for s in reversed(self._slots) if s.index == index), None)
        elif not call_id and self._slots:
            candidate = self._slots[-1]  # no index and no id: a continuation of the last call
        if candidate is not None and not self._starts_new_call(candidate, call_id=call_id, name=name, arguments=arguments):
            return candidate
        slot = ToolCallSlot(index=index, id=call_id)
        self._slots.append(slot)
        return slot

    @staticmethod
    def _starts_new_call(slot: ToolCallSlot, *, call_id: str | None, name: str, arguments: str) -> bool:
        if call_id and slot.id and call_id != slot.id:
            return True  # an index reused for another call
        if not (name and slot.name and slot.arguments and _json_complete(slot.arguments)):
            return False
        # A name after the slot's arguments are complete: the next call (servers that send each
        # call whole with index 0, or with no index at all) unless it only repeats this one.
        return name != slot.name or bool(arguments and arguments != slot.arguments)

    def tool_calls(self) -> list[AssembledToolCall]:
        """The usable calls; each unusable one adds a warning to state.warnings."""
        usable = []
        for position, slot in enumerate(self._slots):
            label = slot.name or f"#{position}"
            if not slot.name:
                self._warn("tool_call_without_name", label, "the server sent arguments but no function name")
                continue
            if self.tool_names and slot.name not in self.tool_names:
                self._warn("tool_call_unknown", label, "the model called a function it was not offered")
                continue
            text = slot.arguments.strip() or "{}"
            try:
                arguments = _json_loads(text)
                if isinstance(arguments, str):  # arguments JSON-encoded twice
                    arguments = _json_loads(arguments)
            except ValueError:
                self._warn("tool_call_invalid_arguments", label, f"arguments are not JSON: {text[:120]!r}")
                continue
            if not isinstance(arguments, dict):
                self._warn("tool_call_invalid_arguments", label, "arguments are not a JSON object")
                continue
            usable.append(AssembledToolCall(slot.name, arguments))
        return usable

    MAX_WARNINGS = 20  # a model emitting hundreds of broken calls must not bloat the turn row

    def _warn(self, code: str, tool: str, detail: str) -> None:
        if len(self.state.warnings) < self.MAX_WARNINGS:
            self.state.warnings.append({"code": code, "tool": tool[:64], "detail": detail[:200]})

    def finish(self) -> str:
        """The stream ended: the visible text still held back (a partial tag that was text)."""
        rest = self.reasoning.flush()
        if self.reasoning.stray_close:
            self._warn("reasoning_without_open_tag", "", "text before a lone </think> was streamed, then dropped from the stored answer")
        if self.state.skipped_lines:
            self._warn("stream_lines_skipped", "", f"{self.state.skipped_lines} data line(s) were not JSON")
        return rest

    @property
    def visible_text(self) -> str:
        return self.reasoning.visible
