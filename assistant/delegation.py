"""Delegated tasks: `/task <지시>`, or the model's `delegate_task` tool, hands a longer job to a Celery job
that answers it as its own turn and reports back with an `auto_report` (task_id = the DelegatedTask's
id). Visible in admin."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from assistant.models import AssistantClient, DelegatedTask
from assistant.reports import report_create
from runtime.commands import CommandContext, CommandReply, command_register, session_language
from runtime.models import Channel, Turn
from runtime.text import text_clean
from runtime.tools import ToolArgumentsError, ToolCallContext, ToolResult, tool_register

logger = logging.getLogger(__name__)

TASK_SECONDS = 600
MAX_INSTRUCTION_CHARS = 2000  # the model's instruction becomes the task turn's message

DELEGATE_TASK_SCHEMA = {
    "type": "object",
    "properties": {
        "instruction": {"type": "string", "maxLength": MAX_INSTRUCTION_CHARS,
                        "description": "what to do, self-contained, in the user's language"},
    },
    "required": ["instruction"],
}


def delegated_task_create(*, client: AssistantClient, agent, instruction: str, source_turn=None) -> DelegatedTask:
    from assistant.tasks import delegated_task_run_task

    task = DelegatedTask.objects.create(organization=client.organization, client=client, agent=agent,
                                        instruction=instruction, source_turn=source_turn)
    transaction.on_commit(lambda: delegated_task_run_task.delay(str(task.pk)))
    return task


def delegated_task_run(*, task_id: str) -> str:
    """Answer the task's instruction as a turn of its own session, then report the result."""
    from runtime.background import turn_answer_background
    from runtime.services import turn_start

    claimed = DelegatedTask.objects.filter(pk=task_id, status=DelegatedTask.Status.QUEUED).update(
        status=DelegatedTask.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return "skipped"  # a redelivered job whose task already ran
    task = DelegatedTask.objects.select_related("client", "agent", "organization", "client__user").get(pk=task_id)
    try:
        # The task's turn is the person's, in a session of its own (the report tells them about it).
        source = Turn.objects.select_related("session__end_user").filter(pk=task.source_turn_id).first()
        turn, _ = turn_start(
            organization=task.organization, agent=task.agent, channel=Channel.ASSISTANT, text=task.instruction,
            end_user=source.session.end_user if source else None,
            client_message_id=f"task-{task.pk}", idempotency_scope="delegated",
            session_metadata={"client_id": task.client.client_id, "delegated_task": str(task.pk)},
        )
        DelegatedTask.objects.filter(pk=task.pk).update(result_turn=turn)
        outcome = turn_answer_background(turn_id=turn.pk).result(timeout=TASK_SECONDS)
    except Exception as exc:
        logger.exception("assistant: delegated task %s failed", task.pk)
        outcome = None
        error = f"{type(exc).__name__}"
    else:
        error = "" if outcome.ok else (outcome.error or {}).get("code", "failed")
    ok = outcome is not None and outcome.ok
    DelegatedTask.objects.filter(pk=task.pk).update(
        status=DelegatedTask.Status.COMPLETED if ok else DelegatedTask.Status.FAILED, error=error,
        finished_at=timezone.now())
    korean = session_language(None, task.instruction) != "en"
    if ok:
        content = outcome.payload["message"]
    else:
        content = ("요청하신 작업을 끝내지 못했어요." if korean else "The task could not be finished.") + f" ({error})"
    heading = ("작업 완료: " if ok else "작업 실패: ") if korean else ("Task done: " if ok else "Task failed: ")
    report_create(organization=task.organization, client=task.client, task=task,
                  content=f"**{heading}{task.instruction[:80]}**\n\n{content}")
    return task.status


def _session_client(session) -> AssistantClient | None:
    """The assistant client (browser tab) a session talks through: where a task's report goes."""
    client_id = (session.metadata or {}).get("client_id")
    if not client_id:
        return None
    return AssistantClient.objects.filter(client_id=client_id, organization_id=session.organization_id).first()


def _task_command(ctx: CommandContext) -> CommandReply:
    korean = session_language(ctx.session, ctx.text) != "en"
    if not ctx.args:
        return CommandReply("사용법: /task <지시>" if korean else "Usage: /task <instruction>")
    client = _session_client(ctx.session)
    if client is None:
        return CommandReply("이 대화에서는 작업을 맡길 수 없어요." if korean else "Tasks cannot be delegated here.")
    task = delegated_task_create(client=client, agent=ctx.session.agent, instruction=ctx.args, source_turn=ctx.turn)
    short = str(task.pk)[:8]
    return CommandReply(f"작업을 맡겼어요 (작업 {short}). 끝나면 보고드릴게요." if korean
                        else f"Task delegated (task {short}). I will report back when it is done.")


def _delegate_tool_offered(session) -> bool:
    # Only where a report can reach someone, and never inside a task's own session (a job that
    # delegates itself again would never end).
    metadata = session.metadata or {}
    return bool(metadata.get("client_id")) and not metadata.get("delegated_task")


def _delegate_tool(ctx: ToolCallContext) -> ToolResult:
    """The model's `delegate_task` call: the same task `/task` starts. ToolArgumentsError for an
    instruction that is missing, not a string, empty or longer than MAX_INSTRUCTION_CHARS."""
    instruction = ctx.arguments.get("instruction")
    if not isinstance(instruction, str) or not text_clean(instruction):
        raise ToolArgumentsError("instruction must be a non-empty string")
    instruction = text_clean(instruction)
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ToolArgumentsError(f"instruction is limited to {MAX_INSTRUCTION_CHARS} characters")
    client = _session_client(ctx.session)
    if client is None:
        raise ToolArgumentsError("this conversation has no assistant client to report to")
    task = delegated_task_create(client=client, agent=ctx.session.agent, instruction=instruction,
                                 source_turn=ctx.turn)
    short = str(task.pk)[:8]
    korean = session_language(ctx.session, ctx.turn.user_text) != "en"
    return ToolResult(
        f"작업을 맡겼어요 (작업 {short}). 끝나면 보고드릴게요." if korean
        else f"Task delegated (task {short}). I will report back when it is done.",
        record={"task_id": str(task.pk)},
    )


def tools_register() -> None:
    tool_register(
        "delegate_task", schema=DELEGATE_TASK_SCHEMA, handler=_delegate_tool, channels={Channel.ASSISTANT},
        offered=_delegate_tool_offered,
        description=("Hand a longer job (research, analysis, a long write-up) to a background task; "
                     "the user gets a report when it is done. Use only when the job would take long to answer now."),
    )


def commands_register() -> None:
    command_register("task", handler=_task_command, aliases=("작업",), channels=frozenset({Channel.ASSISTANT}),
                     help_ko="긴 작업을 맡기고 끝나면 보고받기", help_en="delegate a longer job and get a report")
