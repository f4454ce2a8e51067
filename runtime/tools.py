"""Channel-specific model tools: apps register functions the model may call on their channel.

An app (e.g. `assistant`) registers a tool from its AppConfig.ready(); the pipeline offers the tools
of the session's channel next to the output tools (only when the agent has tools enabled and the
provider is not offline) and, when the model calls one, runs its handler. Runtime never imports a
channel app: the registry is how the dependency points the right way (docs/architecture.md).

A handler is synchronous: handler(ToolCallContext) -> ToolResult. It raises ToolArgumentsError for
arguments it cannot use (the call becomes a warning on the turn, nothing else happens).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ToolArgumentsError(ValueError):
    """The model's arguments cannot be used; the message says why (stored in the turn's warnings)."""


@dataclass
class ToolCallContext:
    turn: Any
    session: Any
    arguments: dict  # the parsed JSON object the model sent


@dataclass
class ToolResult:
    message: str  # short confirmation text, appended to the reply (or the reply when the model said nothing)
    record: dict = field(default_factory=dict)  # what operators see in Turn.diagnostics["tool_calls"]


@dataclass(frozen=True)
class ModelTool:
    name: str
    description: str
    schema: dict  # JSON Schema of the arguments object, as sent to the model
    handler: Callable[[ToolCallContext], ToolResult]
    channels: frozenset[str]
    # Whether a given session is offered the tool (None: every session of its channels).
    offered: Callable[[Any], bool] | None = None

    def offered_to(self, session) -> bool:
        return session.channel in self.channels and (self.offered is None or self.offered(session))

    def spec(self) -> dict:
        """The OpenAI `tools` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.schema}}


_registry: dict[str, ModelTool] = {}


def tool_register(
    name: str, *, schema: dict, handler: Callable[[ToolCallContext], ToolResult],
    channels: frozenset[str] | set[str], description: str = "", offered: Callable[[Any], bool] | None = None,
) -> ModelTool:
    """Register a model tool; call from an AppConfig.ready(). `channels` must name at least one channel
    (a tool is channel-specific by design); registering a name again replaces the earlier tool."""
    if not channels:
        raise ValueError("a model tool needs at least one channel")
    tool = ModelTool(name, description, schema, handler, frozenset(channels), offered)
    _registry[name] = tool
    return tool


def tools_for(channel: str, session=None) -> list[ModelTool]:
    """The tools offered on `channel` (and to `session` when given), by name."""
    tools = [t for t in _registry.values() if channel in t.channels]
    if session is not None:
        tools = [t for t in tools if t.offered_to(session)]
    return sorted(tools, key=lambda t: t.name)
