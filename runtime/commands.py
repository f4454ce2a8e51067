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

    @property
    def language(self) -> str:
        """"ko" or "en": the session's locale when the channel set one, else the message's script."""
        return session_language(self.session, self.text)

    def say(self, ko: str, en: str, **fields) -> CommandReply:
        """A reply in the session's language."""
        return CommandReply(ko if self.language == "ko" else en, **fields)


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
    channels: frozenset[str] | None = None  # None: every channel

    def offered_on(self, channel: str | None) -> bool:
        return self.channels is None or channel in self.channels


# word -> commands registered under it; a channel-specific one wins over an every-channel one
_registry: dict[str, list[Command]] = {}

# Mattermost clients keep messages starting with "/" for slash commands, so "!" works too.
COMMAND_PREFIXES = ("/", "!")


def command_register(
    name: str, *, handler: Callable[[CommandContext], CommandReply], aliases: tuple[str, ...] = (),
    help_ko: str = "", help_en: str = "", channels: frozenset[str] | set[str] | None = None,
) -> Command:
    """Register a command; call from an AppConfig.ready(). Names are given without the prefix.

    `channels` limits where it is offered (e.g. {"kakao"}); None offers it on every channel. A
    command registered for a channel under a word that an every-channel command also uses takes
    precedence on that channel (Kakao's own `/이름` flow over the general one, say).
    """
    command = Command(name, tuple(aliases), handler, help_ko, help_en,
                      frozenset(channels) if channels is not None else None)
    for word in (name, *aliases):
        entries = [c for c in _registry.get(word.lower(), []) if c.channels != command.channels]
        _registry[word.lower()] = [*entries, command]
    return command


def _for_channel(entries: list[Command], channel: str | None) -> Command | None:
    specific = [c for c in entries if c.channels is not None and c.offered_on(channel)]
    if specific:
        return specific[-1]
    general = [c for c in entries if c.channels is None]
    return general[-1] if general else None


def command_match(text: str, *, channel: str | None = None) -> tuple[Command, str] | None:
    """Find the command a message starts with, if any: ('/remember 커피 좋아함') -> (remember, '커피 좋아함').

    Only commands offered on `channel` match; a word of another channel's command is plain text here.
    """
    stripped = text.lstrip()
    if not stripped or stripped[0] not in COMMAND_PREFIXES:
        return None
    word, _, rest = stripped[1:].partition(" ")
    word, nl, more = word.partition("\n")
    command = _for_channel(_registry.get(word.lower(), []), channel)
    if command is None:
        return None
    args = (more + (" " if more and rest else "") + rest) if nl else rest
    return command, args.strip()


def commands_all(*, channel: str | None = None) -> list[Command]:
    """The commands offered on `channel` (all of them when None), one per name."""
    chosen: dict[str, Command] = {}
    for entries in _registry.values():
        command = _for_channel(entries, channel) if channel is not None else entries[-1]
        if command is not None:
            chosen.setdefault(command.name, command)
    return sorted(chosen.values(), key=lambda c: c.name)


def session_language(session: Any, text: str = "") -> str:
    """"en" or "ko": the locale the channel stored on the session (widget init, Mattermost user…),
    else English for a message with Latin letters and no Hangul, else Korean (Korean first)."""
    from runtime.text import text_is_korean

    metadata = getattr(session, "metadata", None) or {}
    locale = str(metadata.get("locale") or "").lower()
    if locale.startswith("en"):
        return "en"
    if locale.startswith("ko"):
        return "ko"
    if text and not text_is_korean(text) and any("a" <= ch.lower() <= "z" for ch in text.lstrip("/!")):
        return "en"
    return "ko"


def _help(ctx: CommandContext) -> CommandReply:
    korean = ctx.language == "ko"
    lines = ["사용할 수 있는 명령어:" if korean else "Commands you can use:"]
    for command in commands_all(channel=ctx.channel):
        aliases = ", ".join(f"/{a}" for a in command.aliases)
        description = command.help_ko if korean else command.help_en
        lines.append(f"/{command.name}" + (f" ({aliases})" if aliases else "") + (f" — {description}" if description else ""))
    return CommandReply("\n".join(lines))


command_register("help", handler=_help, aliases=("도움말",), help_ko="명령어 목록", help_en="list the commands")
