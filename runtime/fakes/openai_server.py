"""A fake OpenAI-compatible chat completions server on loopback, for tests and bench/.

It speaks real HTTP/1.1 (keep-alive, chunked SSE) so the official SDK's code path runs.
Behaviour is set through `FakeLLMConfig`, live, from the process that started it:
time to first token, tokens per second, a failure status for the next N requests,
a cut-off mid-stream, a hang, and tool calls to emit.

Scripted answers: `server.script(Scripted(...), ...)` queues raw answers, one per chat
completions request, written byte for byte as given (each item of `parts` is its own HTTP
chunk, so a line, a JSON value or a UTF-8 character can be split anywhere). Real servers'
stream shapes (OpenAI, Azure, vLLM, Ollama, llama.cpp) are built in `runtime/fakes/shapes.py`.

    python -m runtime.fakes.openai_server --port 8089 --ttft 0.2 --tps 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class FakeLLMConfig:
    ttft: float = 0.0  # seconds before the first token
    tokens_per_second: float = 0.0  # 0 = as fast as possible
    reply: str | None = None  # None: echo a deterministic answer built from the last user message
    tool_calls: list[dict] = field(default_factory=list)  # [{"name": ..., "arguments": {...}}]
    fail_status: int | None = None  # answer this HTTP status ...
    fail_times: int = 0  # ... for this many requests (then behave)
    cut_after_tokens: int | None = None  # drop the connection after this many tokens
    hang: bool = False  # accept and never answer
    models_status: int = 200  # status of GET /models (the readiness probe)


@dataclass
class Scripted:
    """One scripted answer to a chat completions request, as raw bytes."""

    parts: list[bytes] = field(default_factory=list)  # the body, written as separate chunks
    status: int = 200
    content_type: str = "text/event-stream"
    chunked: bool = True  # Transfer-Encoding: chunked (streams); False: Content-Length
    end: str = "clean"  # clean: the chunked terminator; abort: drop the connection after the parts


class FakeOpenAIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: FakeLLMConfig | None = None):
        self.host = host
        self.port = port
        self.config = config or FakeLLMConfig()
        self.requests: list[dict] = []
        self.model_probes = 0
        self.completed = 0
        self.disconnects = 0
        self._scripts: list[Scripted] = []
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # --- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start_async(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeOpenAIServer:
        """Run on a thread of its own with its own event loop."""

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            self._started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._server:
            async def close():
                self._server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def reset(self) -> None:
        self.config = FakeLLMConfig()
        self.requests.clear()
        self._scripts.clear()
        self.model_probes = 0
        self.completed = 0
        self.disconnects = 0

    def script(self, *answers: Scripted) -> FakeOpenAIServer:
        """Queue raw answers for the next chat completions requests (then back to FakeLLMConfig)."""
        self._scripts.extend(answers)
        return self

    @property
    def scripts_left(self) -> int:
        return len(self._scripts)

    # --- HTTP ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep_open = await self._respond(method, path, body, writer)
                if not keep_open or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnects += 1
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _send(self, writer, status: int, body: bytes, content_type="application/json") -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    async def _respond(self, method: str, path: str, body: bytes, writer) -> bool:
        path = path.split("?", 1)[0]
        if method == "GET" and path.endswith("/models"):
            self.model_probes += 1
            if self.config.models_status != 200:
                await self._send(writer, self.config.models_status, b'{"error": {"message": "models unavailable"}}')
                return True
            await self._send(writer, 200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode())
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            await self._send(writer, 404, b'{"error": {"message": "not found"}}')
            return True
        try:
            payload = json.loads(body or b"{}")
        except json.JSONDecodeError:
            await self._send(writer, 400, b'{"error": {"message": "invalid json"}}')
            return True
        self.requests.append(payload)
        if self._scripts:
            return await self._scripted(self._scripts.pop(0), writer)
        cfg = self.config
        if cfg.hang:
            await asyncio.sleep(3600)
            return False
        if cfg.fail_status and cfg.fail_times > 0:
            cfg.fail_times -= 1
            await self._send(writer, cfg.fail_status, json.dumps({"error": {"message": "injected failure", "type": "server_error"}}).encode())
            return True
        tokens = self._tokens(payload)
        if payload.get("stream"):
            return await self._stream(payload, tokens, writer)
        await asyncio.sleep(cfg.ttft)
        text = "".join(tokens)
        message = {"role": "assistant", "content": text}
        if cfg.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for i, c in enumerate(cfg.tool_calls)
            ]
        result = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": payload.get("model", "fake-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": self._usage(payload, tokens),
        }
        await self._send(writer, 200, json.dumps(result, ensure_ascii=False).encode())
        self.completed += 1
        return True

    async def _scripted(self, answer: Scripted, writer) -> bool:
        reason = {200: "OK", 400: "Bad Request", 422: "Unprocessable Entity"}.get(answer.status, "Error")
        if not answer.chunked:
            body = b"".join(answer.parts)
            writer.write(
                f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode() + body
            )
            await writer.drain()
            return True
        writer.write(
            f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
            f"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n".encode()
        )
        for part in answer.parts:
            if part:
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                await writer.drain()
        if answer.end == "abort":
            writer.transport.abort()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.completed += 1
        return True

    def _tokens(self, payload: dict) -> list[str]:
        text = self.config.reply
        if text is None:
            last_user = next((m.get("content") for m in reversed(payload.get("messages", [])) if m.get("role") == "user"), "")
            if not isinstance(last_user, str):
                last_user = json.dumps(last_user, ensure_ascii=False)
            text = f"가짜 모델의 답변입니다: {last_user}"
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    @staticmethod
    def _usage(payload: dict, tokens: list[str]) -> dict:
        prompt = sum(len(str(m.get("content", ""))) for m in payload.get("messages", [])) // 3 + 1
        return {"prompt_tokens": prompt, "completion_tokens": len(tokens), "total_tokens": prompt + len(tokens)}

    async def _stream(self, payload: dict, tokens: list[str], writer) -> bool:
        cfg = self.config
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = payload.get("model", "fake-model")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )

        async def chunk(data: dict | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            raw = f"data: {text}\n\n".encode()
            writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            await writer.drain()

        def frame(delta: dict, finish=None) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if cfg.ttft:
            await asyncio.sleep(cfg.ttft)
        await chunk(frame({"role": "assistant", "content": ""}))
        gap = 1.0 / cfg.tokens_per_second if cfg.tokens_per_second else 0
        for i, token in enumerate(tokens):
            if cfg.cut_after_tokens is not None and i >= cfg.cut_after_tokens:
                writer.transport.abort()  # a broken upstream: no terminating chunk
                return False
            await chunk(frame({"content": token}))
            if gap:
                await asyncio.sleep(gap)
        for i, call in enumerate(cfg.tool_calls):
            args = json.dumps(call["arguments"], ensure_ascii=False)
            half = len(args) // 2  # arguments arrive in fragments, as from real servers
            await chunk(frame({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function", "function": {"name": call["name"], "arguments": args[:half]}}]}))
            await chunk(frame({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
        await chunk(frame({}, finish="tool_calls" if cfg.tool_calls and not tokens else "stop"))
        if (payload.get("stream_options") or {}).get("include_usage"):
            await chunk({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                         "choices": [], "usage": self._usage(payload, tokens)})
        await chunk("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.completed += 1
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    parser.add_argument("--tps", type=float, default=0.0, help="tokens per second (0: unpaced)")
    parser.add_argument("--reply", default=None)
    args = parser.parse_args()
    server = FakeOpenAIServer(args.host, args.port, FakeLLMConfig(ttft=args.ttft, tokens_per_second=args.tps, reply=args.reply))

    async def run():
        await server.start_async()
        print(f"fake OpenAI-compatible server on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
