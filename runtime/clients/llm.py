"""LLM providers: an OpenAI-compatible one on the official SDK, and an offline one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import openai
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings

from runtime.clients import compat
from runtime.clients import llm_health as health
from runtime.clients.stream import ChatStreamAssembler

logger = logging.getLogger(__name__)


@dataclass
class LLMRequest:
    messages: list[dict]
    model: str
    temperature: float = 0.2
    max_tokens: int = 1000
    tools: list[dict] | None = None
    # Structured grounding for providers that answer without a model (offline).
    profile: dict = field(default_factory=dict)
    memories: list[dict] = field(default_factory=list)
    knowledge: list[dict] = field(default_factory=list)  # the organization's, not the person's
    user_text: str = ""
    options: dict = field(default_factory=dict)  # Agent.llm_options: parameters to omit or rename


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCall:
    name: str
    arguments: dict


@dataclass
class Usage:
    tokens_in: int | None
    tokens_out: int | None


@dataclass
class StreamEnd:
    """The server said the answer is finished; the last event of every successful stream.

    `text` is the whole visible answer (reasoning removed; authoritative over the deltas when a
    lone `</think>` turned earlier text into reasoning); `warnings` are operator-visible
    problems (unusable tool calls …); `parameters` the optional parameters as finally sent.
    """

    finish_reason: str
    text: str
    warnings: list[dict] = field(default_factory=list)
    reasoning_chars: int = 0
    parameters: dict = field(default_factory=dict)


LLMStreamEvent = TextDelta | ToolCall | Usage | StreamEnd


class LLMError(Exception):
    """A failed model call, with a code for the client and whether a retry may help.

    `upstream` is the server's answer, masked and bounded ({"status", "body"}), for operators only.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = True, upstream: dict | None = None,
                 warnings: list[dict] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.upstream = upstream
        self.warnings = warnings or []


class LLMProvider:
    name = "base"

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMStreamEvent]:
        raise NotImplementedError

    async def complete(self, request: LLMRequest) -> tuple[str, list[ToolCall], Usage | None]:
        """Run a whole call: its visible text (reasoning removed), tool calls and usage;
        LLMError when it fails or ends without the server saying it finished."""
        calls, usage, end = [], None, None
        stream = self.stream(request)
        try:
            async for event in stream:
                if isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, StreamEnd):
                    end = event
        finally:
            await stream.aclose()
        if end is None:
            raise LLMError("llm_stream_broken", "The language model's answer was cut off.")
        return end.text, calls, usage


# One SDK client per event loop: httpx connection pools cannot cross loops
# (Daphne has one loop; Celery tasks and tests open their own).
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ModelConnections:
    """The cap on model requests in flight on one event loop: one HTTP connection each.

    `LLM_MAX_CONNECTIONS` requests stream at once (the httpx pool has the same size); the next one
    waits at most `LLM_CONNECTION_WAIT_SECONDS` for a slot, then fails with LLMError `model_busy`
    (retryable; 503 with Retry-After on the JSON APIs) instead of waiting silently.
    `model_connections_state()` shows the numbers (runtime.health, /readyz detail).
    """

    refused_total = 0

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self.refused = 0
        self._free = asyncio.Semaphore(limit)

    async def acquire(self, wait_seconds: float) -> None:
        self.waiting += 1
        try:
            # asyncio.timeout, not wait_for: in 3.11 wait_for returns a slot acquired in the same
            # tick as a cancellation and swallows it (a client that left got its answer run anyway).
            async with asyncio.timeout(wait_seconds):
                await self._free.acquire()
        except TimeoutError:
            self.refused += 1
            ModelConnections.refused_total += 1  # every loop's, since the process started
            logger.warning("model connections: all %d in use; a request waited %.1fs and was refused (model_busy)",
                           self.limit, wait_seconds)
            raise LLMError("model_busy", MODEL_BUSY_MESSAGE, retryable=True) from None
        finally:
            self.waiting -= 1
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._free.release()


MODEL_BUSY_MESSAGE = "The language model is busy right now; try again shortly."  # Korean: mejai.error_messages
_connections: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> ModelConnections


def model_connections_for_loop() -> ModelConnections:
    loop = asyncio.get_running_loop()
    slots = _connections.get(loop)
    if slots is None or slots.limit != settings.LLM_MAX_CONNECTIONS and slots.in_use == 0 and slots.waiting == 0:
        slots = _connections[loop] = ModelConnections(settings.LLM_MAX_CONNECTIONS)
    return slots


def model_connections_state() -> dict:
    """{"limit", "in_use", "waiting", "refused_total", "wait_seconds"} summed over this process's
    event loops (the server's one, plus short-lived ones of sync callers)."""
    state = {"limit": settings.LLM_MAX_CONNECTIONS, "in_use": 0, "waiting": 0,
             "refused_total": ModelConnections.refused_total,
             "wait_seconds": settings.LLM_CONNECTION_WAIT_SECONDS}
    for loop, slots in list(_connections.items()):
        if loop.is_closed():
            continue  # a sync caller's loop, gone (its entry leaves with the loop object)
        state["in_use"] += slots.in_use
        state["waiting"] += slots.waiting
    return state


def _client_for_loop() -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    key = (settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, settings.LLM_READ_TIMEOUT, settings.LLM_MAX_CONNECTIONS)
    cached = _clients.get(loop)
    if cached and cached[0] == key:
        return cached[1]
    limit = settings.LLM_MAX_CONNECTIONS
    client = openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY or "not-needed",
        base_url=settings.OPENAI_BASE_URL or None,
        max_retries=settings.LLM_MAX_RETRIES,  # the SDK retries 408/409/429/5xx and connection errors
        timeout=httpx.Timeout(settings.LLM_READ_TIMEOUT, connect=settings.LLM_CONNECT_TIMEOUT),
        http_client=httpx.AsyncClient(
            # The same size as ModelConnections: a request that holds a slot never waits for the pool.
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=min(limit, 50)),
            timeout=httpx.Timeout(settings.LLM_READ_TIMEOUT, connect=settings.LLM_CONNECT_TIMEOUT),
        ),
    )
    _clients[loop] = (key, client)
    return client


async def loop_client_close() -> None:
    """Close this event loop's SDK client (its HTTP connections): for short-lived loops, see complete_sync."""
    loop = asyncio.get_running_loop()
    cached = _clients.pop(loop, None)
    if cached is not None:
        await cached[1].close()


def complete_sync(provider: LLMProvider, request: LLMRequest) -> tuple[str, list[ToolCall], Usage | None]:
    """`provider.complete(request)` for sync code (Celery jobs, commands).

    async_to_sync runs it on a new event loop each time when the caller has none; the SDK client
    made for that loop is closed before the loop goes, so no HTTP connection outlives the call
    (one leaked per job before). On a loop that already had a client (a server's), it stays.
    """

    async def run():
        had_client = asyncio.get_running_loop() in _clients
        try:
            return await provider.complete(request)
        finally:
            if not had_client:
                await loop_client_close()

    return async_to_sync(run)()


class OpenAICompatibleProvider(LLMProvider):
    """Chat completions over any OpenAI-compatible server (OpenAI, Azure, vLLM, Ollama, llama.cpp).

    The SDK sends the request (retries, timeouts, status errors); the SSE body is read line by
    line and assembled by `ChatStreamAssembler`, which knows the shapes real servers send.
    Optional parameters a server refuses are dropped and remembered (runtime.clients.compat).
    The stream ends with a `StreamEnd`, or an `LLMError` when the server never said it finished.
    See docs/model-compatibility.md.
    """

    name = "openai"
    MAX_PARAMETER_RETRIES = 2

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMStreamEvent]:
        client = _client_for_loop()
        base_url = str(client.base_url)
        policy = await compat.policy_for(base_url=base_url, model=request.model, options=request.options)
        tool_names = frozenset(
            t["function"]["name"] for t in request.tools or [] if isinstance(t.get("function"), dict) and t["function"].get("name")
        )
        slots = model_connections_for_loop()
        await slots.acquire(settings.LLM_CONNECTION_WAIT_SECONDS)
        try:
            # aclosing: a consumer that stops early (client gone) closes the upstream response now.
            async with contextlib.aclosing(self._stream(client, base_url, policy, tool_names, request)) as events:
                async for event in events:
                    yield event
        finally:
            slots.release()

    async def _stream(self, client, base_url, policy, tool_names, request) -> AsyncIterator[LLMStreamEvent]:
        retries = 0
        while True:
            body = compat.request_body(
                model=request.model, messages=request.messages, temperature=request.temperature,
                max_tokens=request.max_tokens, tools=request.tools, policy=policy,
            )
            try:
                # cast_to=httpx.Response with stream=True: the SDK hands over the open response.
                response = await client.post("/chat/completions", cast_to=httpx.Response, body=body, stream=True)
                break
            except openai.APITimeoutError as exc:
                await _outage("llm_timeout")
                raise LLMError("llm_timeout", "The language model did not answer in time.") from exc
            except openai.APIConnectionError as exc:
                await _outage("llm_unavailable")
                raise LLMError("llm_unavailable", "The language model could not be reached.") from exc
            except openai.APIStatusError as exc:
                upstream = compat.upstream_error_describe(status=exc.status_code, body=_response_text(exc))
                adjusted = compat.refusal_adjust(status=exc.status_code, body_text=upstream["body"], sent=body, policy=policy)
                if adjusted is not None and retries < self.MAX_PARAMETER_RETRIES:
                    logger.warning("model %s at %s refused a parameter (%s %s): retrying with %s",
                                   request.model, base_url, exc.status_code, upstream["body"], adjusted.as_dict())
                    await compat.refused_remember(base_url=base_url, model=request.model, policy=adjusted)
                    policy, retries = adjusted, retries + 1
                    continue
                logger.warning("model %s at %s answered %s: %s", request.model, base_url, exc.status_code, upstream["body"])
                if isinstance(exc, openai.RateLimitError):
                    raise LLMError("llm_rate_limited", "The language model is rate limited; try again shortly.",
                                   upstream=upstream) from exc
                if exc.status_code >= 500 or exc.status_code in (401, 403):
                    await _outage("llm_error")
                raise LLMError("llm_error", f"The language model answered {exc.status_code}.",
                               retryable=exc.status_code >= 500, upstream=upstream) from exc

        assembler = ChatStreamAssembler(tool_names=tool_names)
        lines = response.aiter_lines()
        try:
            while True:
                try:
                    line = await lines.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - any read failure of the body (httpx or SDK types)
                    if "Timeout" in type(exc).__name__:
                        await _outage("llm_timeout")
                        raise LLMError("llm_timeout", "The language model stopped answering.") from exc
                    await _outage("llm_stream_broken")
                    raise LLMError("llm_stream_broken", "The language model's answer was cut off.") from exc
                text = assembler.feed_line(line)
                if text:
                    yield TextDelta(text)
                if assembler.state.error is not None:
                    upstream = compat.upstream_error_describe(status=response.status_code, body=assembler.state.error)
                    logger.warning("model %s at %s sent an error mid-stream: %s", request.model, base_url, upstream["body"])
                    await _outage("llm_stream_broken")
                    raise LLMError("llm_stream_broken", "The language model reported an error while answering.",
                                   upstream=upstream, warnings=assembler.state.warnings)
                if assembler.state.done:
                    break
        finally:
            # Closing the response closes the upstream HTTP stream, also on cancellation.
            await response.aclose()

        rest = assembler.finish()
        if rest:
            yield TextDelta(rest)
        calls = assembler.tool_calls()
        state = assembler.state
        if state.usage is not None:
            yield Usage(*state.usage)
        if state.finish_reason is None:
            # Ended without the server saying it finished (no finish_reason): a cut-off answer.
            await _outage("llm_stream_broken")
            raise LLMError("llm_stream_broken", "The language model's answer was cut off.", warnings=state.warnings)
        if health.llm_success_due():
            await sync_to_async(health.llm_success_record, thread_sensitive=False)()
        for call in calls:
            yield ToolCall(call.name, call.arguments)
        yield StreamEnd(
            finish_reason=state.finish_reason, text=assembler.visible_text, warnings=list(state.warnings),
            reasoning_chars=assembler.reasoning.reasoning_chars, parameters=policy.as_dict(),
        )


async def _outage(code: str) -> None:
    await sync_to_async(health.llm_failure_record, thread_sensitive=False)(code=code)


def _response_text(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text
    except Exception:  # noqa: BLE001 - a streamed error body that cannot be read any more
        return str(exc.body or exc.message or "")


class OfflineProvider(LLMProvider):
    """Deterministic answers without a model: says so plainly and answers from memory."""

    name = "offline"
    words_per_second = 0  # 0 = no artificial pacing; the answer still streams word by word

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMStreamEvent]:
        answer = offline_answer(request)
        words = answer.split(" ")
        for i, word in enumerate(words):
            yield TextDelta(word if i == 0 else " " + word)
            await asyncio.sleep(0)
        yield Usage(0, 0)
        yield StreamEnd(finish_reason="stop", text=answer)


def _images_in(request: LLMRequest) -> int:
    """How many image parts the user's message carries (channels that accept images add them)."""
    content = request.messages[-1].get("content") if request.messages else None
    return sum(1 for part in content if part.get("type") == "image_url") if isinstance(content, list) else 0


def offline_answer(request: LLMRequest) -> str:
    from runtime.text import text_is_korean

    korean = text_is_korean(request.user_text)
    images = _images_in(request)
    name = (request.profile or {}).get("name") or ""
    memories = [m.get("text", "") for m in request.memories if m.get("text")][:3]
    knowledge = [m.get("text", "") for m in request.knowledge if m.get("text")][:3]
    if korean:
        lines = [f"{name}님, 안녕하세요." if name else "안녕하세요."]
        lines.append("지금은 AI 모델이 설정되어 있지 않아 오프라인 모드로 답변드려요.")
        if memories:
            lines.append("제가 기억하고 있는 관련 내용은 다음과 같아요:")
            lines.extend(f"- {m}" for m in memories)
        if knowledge:
            lines.append("도움이 될 만한 안내 정보예요:")
            lines.extend(f"- {m}" for m in knowledge)
        if not memories and not knowledge:
            lines.append(f"'{_clip(request.user_text)}' 메시지를 잘 받았고, 대화는 저장되었어요.")
        if images:
            lines.append(f"첨부하신 이미지 {images}장은 볼 수 없어요: 오프라인 모드에서는 이미지를 확인할 수 없습니다.")
    else:
        lines = [f"Hello, {name}." if name else "Hello."]
        lines.append("No AI model is configured, so I am answering in offline mode.")
        if memories:
            lines.append("Here is what I remember that may help:")
            lines.extend(f"- {m}" for m in memories)
        if knowledge:
            lines.append("Here is general information that may help:")
            lines.extend(f"- {m}" for m in knowledge)
        if not memories and not knowledge:
            lines.append(f"I received \"{_clip(request.user_text)}\" and saved the conversation.")
        if images:
            lines.append(f"I cannot see the {images} image(s) you attached: offline mode cannot look at images.")
    return "\n".join(lines)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def provider_get() -> LLMProvider:
    """The configured provider: OpenAI-compatible when a key or base URL is set, else offline."""
    if settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL:
        return OpenAICompatibleProvider()
    return OfflineProvider()
