"""The command router: apps register slash commands the pipeline answers without the LLM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CommandContext:
    organization: Any
    session: Any
    turn: Any
    end_user: Any | None
    name: str  # the canonical command name
    args: str  # what followed the command word, trimmed
    text: str  # the whole cleaned message
    channel: str


@dataclass
class CommandReply:
    message: str
    quick_replies: list[dict] = field(default_factory=list)
    response_schema: dict | None = None


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    handler: Callable[[CommandContext], CommandReply]
    help_ko: str
    help_en: str


_registry: dict[str, Command] = {}

# Mattermost clients keep messages starting with "/" for slash commands, so "!" works too.
COMMAND_PREFIXES = ("/", "!")


def command_register(
    name: str, *, handler: Callable[[CommandContext], CommandReply], aliases: tuple[str, ...] = (),
    help_ko: str = "", help_en: str = "",
) -> Command:
    """Register a command; call from an AppConfig.ready(). Names are given without the prefix."""
    command = Command(name, tuple(aliases), handler, help_ko, help_en)
    for word in (name, *aliases):
        _registry[word.lower()] = command
    return command


def command_match(text: str) -> tuple[Command, str] | None:
    """Find the command a message starts with, if any: ('/remember 커피 좋아함') -> (remember, '커피 좋아함')."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in COMMAND_PREFIXES:
        return None
    word, _, rest = stripped[1:].partition(" ")
    word, nl, more = word.partition("\n")
    command = _registry.get(word.lower())
    if command is None:
        return None
    args = (more + (" " if more and rest else "") + rest) if nl else rest
    return command, args.strip()


def commands_all() -> list[Command]:
    seen, result = set(), []
    for command in _registry.values():
        if command.name not in seen:
            seen.add(command.name)
            result.append(command)
    return sorted(result, key=lambda c: c.name)


def _help(ctx: CommandContext) -> CommandReply:
    from runtime.text import text_is_korean

    korean = text_is_korean(ctx.text)
    lines = ["사용할 수 있는 명령어:" if korean else "Commands you can use:"]
    for command in commands_all():
        aliases = ", ".join(f"/{a}" for a in command.aliases)
        description = command.help_ko if korean else command.help_en
        lines.append(f"/{command.name}" + (f" ({aliases})" if aliases else "") + (f" — {description}" if description else ""))
    return CommandReply("\n".join(lines))


command_register("help", handler=_help, aliases=("도움말",), help_ko="명령어 목록", help_en="list the commands")
