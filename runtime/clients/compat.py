"""What an OpenAI-compatible server accepts: optional request parameters, and its error bodies.

mejai sends `temperature`, `max_tokens`, `stream_options` and (when the agent uses them) `tools`
by default. Servers differ: newer OpenAI models refuse `max_tokens` (they want
`max_completion_tokens`) and any `temperature` but the default; some vLLM/llama.cpp builds and
proxies refuse `stream_options`; some Ollama models refuse `tools`. The rules:

* an agent's `llm_options` (`{"omit": [...], "max_tokens_parameter": "max_completion_tokens"}`)
  and the `LLM_OMIT_PARAMETERS` / `LLM_MAX_TOKENS_PARAMETER` settings choose up front;
* a 400/422 whose body names a parameter mejai sent (and is not about its value being too
  large) is retried once without it (`max_tokens` becomes `max_completion_tokens` when the body
  asks for that), and the refusal is remembered per base URL and model for
  `LLM_PARAMETER_MEMORY_SECONDS` (shared through the cache, so every process learns it);
* the upstream error body is kept masked and bounded (`upstream_error_describe`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.cache import cache

OPTIONAL_PARAMETERS = ("temperature", "max_tokens", "stream_options", "tools")
MAX_TOKENS_PARAMETERS = ("max_tokens", "max_completion_tokens")
UPSTREAM_BODY_LIMIT = 1000

# A parameter named in an error about its value or the context size is not refused as such.
_VALUE_PROBLEM = re.compile(r"context length|context window|too large|too long|exceed|at most|maximum context", re.I)
_SECRETS = (
    re.compile(r"\b(sk|pk|rk|mj_sk|mw_pk)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\b(bearer|token|api[-_ ]?key|authorization|secret|password)(\s*[:=]\s*|\s+)[\"']?[^\s\"',}]{6,}"),
    re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"),  # e-mail addresses echoed from a prompt
)
_LOCAL_SECONDS = 60.0  # how long a process trusts its copy of what the cache remembers


@dataclass(frozen=True)
class ParameterPolicy:
    omit: frozenset[str] = frozenset()
    max_tokens_name: str = "max_tokens"

    def as_dict(self) -> dict:
        return {"omit": sorted(self.omit), "max_tokens_parameter": self.max_tokens_name}


def agent_llm_options_clean(value) -> dict:
    """The stored shape of Agent.llm_options; ValueError naming what is wrong."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValueError('llm_options must be an object such as {"omit": ["stream_options"]}.')
    unknown = set(value) - {"omit", "max_tokens_parameter"}
    if unknown:
        raise ValueError(f"unknown llm_options keys: {', '.join(sorted(unknown))}")
    cleaned: dict = {}
    omit = value.get("omit", [])
    if not isinstance(omit, list) or not all(isinstance(name, str) for name in omit):
        raise ValueError("llm_options.omit must be a list of parameter names.")
    bad = [name for name in omit if name not in OPTIONAL_PARAMETERS]
    if bad:
        raise ValueError(f"llm_options.omit may name only {', '.join(OPTIONAL_PARAMETERS)}; not {', '.join(bad)}")
    if omit:
        cleaned["omit"] = sorted(set(omit))
    name = value.get("max_tokens_parameter")
    if name is not None:
        if name not in MAX_TOKENS_PARAMETERS:
            raise ValueError(f"llm_options.max_tokens_parameter must be one of {', '.join(MAX_TOKENS_PARAMETERS)}")
        cleaned["max_tokens_parameter"] = name
    return cleaned


# --- remembered refusals -----------------------------------------------------------------
_local: dict[str, tuple[float, dict]] = {}


def _memory_key(base_url: str, model: str) -> str:
    return "llm:refused:" + hashlib.sha256(f"{base_url.rstrip('/')}|{model}".encode()).hexdigest()[:32]


async def refused_get(*, base_url: str, model: str) -> dict:
    """What this server refused before, for this model: {"omit": [...], "max_tokens_parameter": …}."""
    key = _memory_key(base_url, model)
    entry = _local.get(key)
    if entry and time.monotonic() - entry[0] < _LOCAL_SECONDS:
        return entry[1]
    learned = await cache.aget(key) or {}
    _local[key] = (time.monotonic(), learned)
    return learned


async def refused_remember(*, base_url: str, model: str, policy: ParameterPolicy) -> None:
    key = _memory_key(base_url, model)
    learned = {"omit": sorted(policy.omit), "max_tokens_parameter": policy.max_tokens_name}
    _local[key] = (time.monotonic(), learned)
    await cache.aset(key, learned, timeout=settings.LLM_PARAMETER_MEMORY_SECONDS)


def refused_forget() -> None:
    """Forget every refusal this process learned or read, here and in the cache (tests; an
    operator after upgrading the model server can also wait for LLM_PARAMETER_MEMORY_SECONDS)."""
    if _local:
        cache.delete_many(list(_local))
    _local.clear()


async def policy_for(*, base_url: str, model: str, options: dict | None) -> ParameterPolicy:
    """Settings, then the agent's options, then what the server refused before."""
    omit = set(getattr(settings, "LLM_OMIT_PARAMETERS", ()) or ()) & set(OPTIONAL_PARAMETERS)
    max_name = getattr(settings, "LLM_MAX_TOKENS_PARAMETER", "max_tokens") or "max_tokens"
    options = options or {}
    omit |= set(options.get("omit") or ())
    max_name = options.get("max_tokens_parameter") or max_name
    learned = await refused_get(base_url=base_url, model=model)
    omit |= set(learned.get("omit") or ())
    if learned.get("max_tokens_parameter") in MAX_TOKENS_PARAMETERS and learned["max_tokens_parameter"] != "max_tokens":
        max_name = learned["max_tokens_parameter"]
    if max_name not in MAX_TOKENS_PARAMETERS:
        max_name = "max_tokens"
    return ParameterPolicy(omit=frozenset(omit), max_tokens_name=max_name)


def request_body(*, model: str, messages: list[dict], temperature: float, max_tokens: int, tools: list[dict] | None,
                 policy: ParameterPolicy) -> dict:
    body: dict = {"model": model, "messages": messages, "stream": True}
    if "temperature" not in policy.omit:
        body["temperature"] = temperature
    if "max_tokens" not in policy.omit:
        body[policy.max_tokens_name] = max_tokens
    if "stream_options" not in policy.omit:
        body["stream_options"] = {"include_usage": True}
    if tools and "tools" not in policy.omit:
        body["tools"] = tools
    return body


def refusal_adjust(*, status: int, body_text: str, sent: dict, policy: ParameterPolicy) -> ParameterPolicy | None:
    """The policy to retry with when a 400/422 names parameters mejai sent; None when it does not."""
    if status not in (400, 422) or not body_text or _VALUE_PROBLEM.search(body_text):
        return None
    named = {name for name in (*OPTIONAL_PARAMETERS, "max_completion_tokens") if name in sent and _names(body_text, name)}
    if not named:
        return None
    omit, max_name = set(policy.omit), policy.max_tokens_name
    for name in named:
        if name == "max_tokens" and _names(body_text, "max_completion_tokens") and max_name == "max_tokens":
            max_name = "max_completion_tokens"  # "Use 'max_completion_tokens' instead."
        elif name in ("max_tokens", "max_completion_tokens"):
            omit.add("max_tokens")
        else:
            omit.add(name)
    adjusted = replace(policy, omit=frozenset(omit), max_tokens_name=max_name)
    return adjusted if adjusted != policy else None


def _names(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


# --- upstream error bodies ---------------------------------------------------------------

def upstream_text_mask(text: str, *, limit: int = UPSTREAM_BODY_LIMIT) -> str:
    """An upstream body safe to keep: keys, tokens and e-mail addresses masked, at most `limit` chars."""
    text = text or ""
    key = settings.OPENAI_API_KEY
    if key and len(key) >= 6:
        text = text.replace(key, "[masked]")
    for pattern in _SECRETS:
        text = pattern.sub("[masked]", text)
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def upstream_error_describe(*, status: int | None, body) -> dict:
    """{"status", "body"} for the turn's diagnostics and the log."""
    if isinstance(body, (dict, list)):
        text = json.dumps(body, ensure_ascii=False)
    else:
        text = str(body or "")
    return {"status": status, "body": upstream_text_mask(text)}
