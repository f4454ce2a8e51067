"""Memory commands for the runtime's command router: /remember, /search, /memory, /forget (Korean aliases)."""

from __future__ import annotations

from endusers import selectors, services
from endusers.models import EndUser, Memory
from runtime.commands import CommandContext, CommandReply, command_register
from runtime.text import text_is_korean

LIST_LIMIT = 20


def _say(ctx: CommandContext, ko: str, en: str) -> CommandReply:
    return CommandReply(ko if text_is_korean(ctx.text) else en)


def _end_user(ctx: CommandContext, *, create: bool) -> EndUser | None:
    """The conversation's end user; /remember in an anonymous session creates one for it."""
    from runtime.models import Session

    if ctx.end_user is not None:
        return selectors.end_user_canonical(ctx.end_user)
    session = Session.objects.filter(pk=ctx.session.pk).select_related("end_user").first()
    if session.end_user is not None:
        return selectors.end_user_canonical(session.end_user)
    if not create:
        return None
    end_user = EndUser.objects.create(organization=ctx.organization)
    Session.objects.filter(pk=session.pk, end_user__isnull=True).update(end_user=end_user)
    session.refresh_from_db(fields=["end_user"])
    return session.end_user


def remember(ctx: CommandContext) -> CommandReply:
    if not ctx.args:
        return _say(ctx, "기억할 내용을 함께 적어 주세요. 예: /기억 환불은 7일 이내 가능", "Tell me what to remember, e.g. /remember I prefer email")
    end_user = _end_user(ctx, create=True)
    memory = services.memory_add(end_user=end_user, text=ctx.args, source=Memory.Source.COMMAND, turn=ctx.turn,
                                 actor=f"command:{ctx.channel}")
    return _say(ctx, f"기억했어요 (#{memory.pk}): {memory.text}", f"Remembered (#{memory.pk}): {memory.text}")


def search(ctx: CommandContext) -> CommandReply:
    if not ctx.args:
        return _say(ctx, "검색어를 함께 적어 주세요. 예: /검색 환불", "Add what to search for, e.g. /search refund")
    end_user = _end_user(ctx, create=False)
    found = selectors.memory_search(end_user=end_user, query=ctx.args, limit=5) if end_user else []
    if not found:
        return _say(ctx, f"'{ctx.args}'에 대한 기억이 없어요.", f"Nothing remembered about “{ctx.args}”.")
    lines = [f"#{m.pk} {m.text}" for m in found]
    return _say(ctx, "찾은 기억:\n" + "\n".join(lines), "Found in memory:\n" + "\n".join(lines))


def memory_list(ctx: CommandContext) -> CommandReply:
    end_user = _end_user(ctx, create=False)
    memories = list(selectors.memories_active(end_user=end_user)[:LIST_LIMIT]) if end_user else []
    if not memories:
        return _say(ctx, "아직 기억하고 있는 내용이 없어요. /기억 <내용> 으로 알려 주세요.",
                    "I don't remember anything yet. Tell me with /remember <fact>.")
    lines = [f"#{m.pk} {m.text}" for m in memories]
    return _say(ctx, "기억하고 있는 내용 (최신순):\n" + "\n".join(lines) + "\n지우려면: /잊기 <번호>",
                "What I remember (newest first):\n" + "\n".join(lines) + "\nTo delete one: /forget <id>")


def forget(ctx: CommandContext) -> CommandReply:
    if not ctx.args:
        return _say(ctx, "지울 기억의 번호를 적어 주세요. 예: /잊기 12 (/메모리 로 번호 확인)",
                    "Give the id of the memory to delete, e.g. /forget 12 (see /memory)")
    end_user = _end_user(ctx, create=False)
    if end_user is None:
        return _say(ctx, f"#{ctx.args.lstrip('#')} 기억을 찾을 수 없어요.", f"Memory #{ctx.args.lstrip('#')} not found.")
    memory = selectors.memory_get_for_end_user(end_user=end_user, memory_id=ctx.args.split()[0])
    services.memory_delete(memory=memory, actor=f"command:{ctx.channel}", turn=ctx.turn)
    return _say(ctx, f"#{memory.pk} 기억을 지웠어요: {memory.text}", f"Forgot #{memory.pk}: {memory.text}")


NAME_COMMAND = "이름"
NAME_CANCEL_WORDS = frozenset({"취소", "cancel", "그만"})
NAME_RULES = ("이름은 한글·영문·숫자와 ·, -, _ 로 1–20자까지 쓸 수 있어요. 다시 보내 주세요.",
              "A name is 1–20 letters, digits, ·, - or _. Please send it again.")


def name_set(ctx: CommandContext) -> CommandReply:
    """/이름 <새 이름> (/name Alex): the name the assistant calls this person, on every channel."""
    from endusers.rules import name_extract, name_valid

    args = ctx.args.strip()
    if args.lower() in NAME_CANCEL_WORDS:
        return ctx.say("이름 변경을 취소했어요. 다른 궁금한 점이 있으면 말씀해 주세요.",
                       "Name change cancelled. Ask me anything else.")
    if not args:
        return ctx.say("'/이름 홍길동'처럼 새 이름을 함께 보내 주세요.", "Send your new name with it, e.g. /name Alex.")
    name = name_extract(args) or args
    if not name_valid(name):
        return ctx.say(*NAME_RULES)
    end_user = _end_user(ctx, create=True)
    services.profile_name_set(end_user=end_user, name=name)
    return ctx.say(f"좋아요, {name}님! 앞으로 {name}님이라고 불러 드릴게요.", f"Nice to meet you, {name}! I'll call you {name}.")


def commands_register() -> None:
    command_register(NAME_COMMAND, handler=name_set, aliases=("name",),
                     help_ko="부를 이름 바꾸기 (/이름 홍길동)", help_en="change the name I call you (/name Alex)")
    command_register("remember", handler=remember, aliases=("기억", "기억해"),
                     help_ko="내용을 기억해요", help_en="remember a fact")
    command_register("search", handler=search, aliases=("검색",), help_ko="기억에서 찾아요", help_en="search your memories")
    command_register("memory", handler=memory_list, aliases=("메모리", "기억목록"),
                     help_ko="기억한 내용 보기 (최신순)", help_en="list memories, newest first")
    command_register("forget", handler=forget, aliases=("잊기", "잊어"), help_ko="번호로 기억 지우기",
                     help_en="delete a memory by id")
