"""Stream shapes of real OpenAI-compatible servers, as raw bytes for `FakeOpenAIServer.script`.

Each builder returns the SSE body as a list of byte parts (each written as its own HTTP chunk).
The shapes follow what the servers send on the wire:

* OpenAI: a role chunk, content deltas, a chunk with `finish_reason`, a usage chunk with
  `choices: []` when `stream_options.include_usage`, `data: [DONE]`;
* Azure OpenAI: first a chunk with `choices: []` and `prompt_filter_results`, deltas carrying
  `content_filter_results`, no usage chunk;
* vLLM: `reasoning_content` deltas (reasoning parser on), tool calls as a header delta
  (id, name, `arguments: ""`) then argument fragments with only `index`; `data: {"error": …}`
  mid-stream on an engine error;
* Ollama (`/v1`): `system_fingerprint: "fp_ollama"`, `reasoning` deltas, each tool call whole in
  one delta (older versions without `index`), `finish_reason: "stop"` even after tool calls;
* llama.cpp server: `content: null` deltas, `timings` in the last chunk.
"""

from __future__ import annotations

import json

from runtime.fakes.openai_server import Scripted

CID = "chatcmpl-scripted"


def event(data: dict | str) -> bytes:
    if isinstance(data, str):
        return f"data: {data}\n\n".encode()
    try:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
    except UnicodeEncodeError:  # a lone surrogate: sent as a \ud800 escape, as servers do
        return f"data: {json.dumps(data)}\n\n".encode()


def chunk(delta: dict | None = None, *, finish: str | None = None, model: str = "gpt-4o-mini", **extra) -> dict:
    choice = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}
    return {"id": CID, "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [choice], **extra}


def usage_chunk(prompt: int = 12, completion: int = 5, *, model: str = "gpt-4o-mini") -> dict:
    return {"id": CID, "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


def split_every(parts: list[bytes], size: int) -> list[bytes]:
    """The same bytes re-cut every `size` bytes: lines, JSON and UTF-8 characters split anywhere."""
    raw = b"".join(parts)
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def openai_stream(texts: list[str], *, finish: str | None = "stop", usage: bool = True, done: bool = True,
                  tool_calls: list[dict] | None = None) -> Scripted:
    parts = [event(chunk({"role": "assistant", "content": ""}))]
    parts += [event(chunk({"content": text})) for text in texts]
    for delta in tool_calls or []:
        parts.append(event(chunk({"tool_calls": [delta]})))
    if finish is not None:
        parts.append(event(chunk({}, finish=finish)))
    if usage:
        parts.append(event(usage_chunk()))
    if done:
        parts.append(event("[DONE]"))
    return Scripted(parts=parts)


def azure_stream(texts: list[str], *, finish: str | None = "stop") -> Scripted:
    filters = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
    parts = [event({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}]})]
    parts.append(event(chunk({"role": "assistant", "content": ""}, model="gpt-4o-2024-08-06")))
    for text in texts:
        item = chunk({"content": text}, model="gpt-4o-2024-08-06")
        item["choices"][0]["content_filter_results"] = filters
        parts.append(event(item))
    if finish is not None:
        parts.append(event(chunk({}, finish=finish, model="gpt-4o-2024-08-06")))
    parts.append(event("[DONE]"))
    return Scripted(parts=parts)


def vllm_stream(texts: list[str], *, reasoning: list[str] = (), finish: str | None = "stop",
                tool_calls: list[dict] | None = None, reasoning_field: str = "reasoning_content") -> Scripted:
    model = "Qwen/Qwen3-8B"
    parts = [event(chunk({"role": "assistant", "content": ""}, model=model))]
    parts += [event(chunk({reasoning_field: text}, model=model)) for text in reasoning]
    parts += [event(chunk({"content": text}, model=model)) for text in texts]
    for delta in tool_calls or []:
        parts.append(event(chunk({"tool_calls": [delta]}, model=model)))
    if finish is not None:
        parts.append(event(chunk({}, finish=finish, model=model)))
    parts.append(event(usage_chunk(model=model)))
    parts.append(event("[DONE]"))
    return Scripted(parts=parts)


def ollama_stream(texts: list[str], *, reasoning: list[str] = (), finish: str | None = "stop",
                  tool_calls: list[dict] | None = None) -> Scripted:
    def ollama(delta, finish_reason=None):
        return chunk(delta, finish=finish_reason, model="qwen3:8b", system_fingerprint="fp_ollama")

    parts = [event(ollama({"role": "assistant", "reasoning": text, "content": ""})) for text in reasoning]
    parts += [event(ollama({"role": "assistant", "content": text})) for text in texts]
    if tool_calls:
        parts.append(event(ollama({"role": "assistant", "content": "", "tool_calls": tool_calls})))
    if finish is not None:
        parts.append(event(ollama({"role": "assistant", "content": ""}, finish)))
    parts.append(event("[DONE]"))
    return Scripted(parts=parts)


def llamacpp_stream(texts: list[str], *, finish: str | None = "stop") -> Scripted:
    model = "gpt-3.5-turbo"  # llama.cpp's server reports this name by default
    parts = [event(chunk({"role": "assistant", "content": None}, model=model))]
    parts += [event(chunk({"content": text}, model=model)) for text in texts]
    if finish is not None:
        parts.append(event(chunk({}, finish=finish, model=model, timings={"predicted_n": len(texts)})))
    parts.append(event("[DONE]"))
    return Scripted(parts=parts)


def error_answer(status: int, body: dict | str) -> Scripted:
    raw = body if isinstance(body, str) else json.dumps(body)
    return Scripted(parts=[raw.encode()], status=status, content_type="application/json", chunked=False)
