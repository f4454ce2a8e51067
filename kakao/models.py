"""Kakao channel: bot configuration, Kakao users, callback delivery tasks and the channel's event log."""

from __future__ import annotations

import secrets
import uuid

from django.db import models

DEFAULT_WAITING_TEXT = "답변을 생성하고 있어요. 잠시만 기다려 주세요."
DEFAULT_WELCOME_TEXT = "안녕하세요! 무엇이든 물어보세요. 이름을 알려 주시면 기억해 둘게요. (예: 내 이름은 민수야)"


def _default_hosts() -> list[str]:
    return ["bot-api.kakao.com"]


def _secret() -> str:
    return secrets.token_urlsafe(32)


class KakaoBot(models.Model):
    """One Kakao i Open Builder bot whose skill points at this server."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="kakao_bots")
    agent = models.ForeignKey("runtime.Agent", on_delete=models.PROTECT, related_name="kakao_bots")
    name = models.CharField(max_length=100)
    bot_id = models.CharField(
        max_length=64, unique=True,
        help_text="Open Builder bot id (bot.id), without the trailing '!' of the development channel.",
    )
    secret_header_name = models.CharField(
        max_length=64, default="X-Mejai-Skill-Secret",
        help_text="Header added in the skill settings (헤더값 입력); compared in constant time.",
    )
    secret_header_value = models.CharField(max_length=200, default=_secret)
    waiting_text = models.CharField(
        max_length=200, default=DEFAULT_WAITING_TEXT,
        help_text="Shown while the answer is generated (the block's waiting message {{#webhook.text}}).",
    )
    welcome_text = models.CharField(max_length=500, default=DEFAULT_WELCOME_TEXT, help_text="POST /kakao/welcome.")
    allowed_callback_hosts = models.JSONField(
        default=_default_hosts, help_text='Hosts a callbackUrl may point at, e.g. ["bot-api.kakao.com"].'
    )
    session_timeout_minutes = models.PositiveIntegerField(
        default=30, help_text="Inactivity after which the next message starts a new conversation."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        verbose_name = "Kakao bot"

    def __str__(self) -> str:
        return f"{self.name} ({self.bot_id})"

    def clean(self):
        from django.core.exceptions import ValidationError

        from kakao.security import secret_header_name_problem

        problem = secret_header_name_problem(self.secret_header_name)
        if problem:
            raise ValidationError({"secret_header_name": problem})


class KakaoUser(models.Model):
    """A Kakao user of one bot (botUserKey), the end user behind it and their current conversation."""

    class Mode(models.TextChoices):
        NONE = "", "—"
        NAME_CHANGE = "name_change", "waiting for a new name"

    bot = models.ForeignKey(KakaoBot, on_delete=models.CASCADE, related_name="users")
    user_key = models.CharField(max_length=70, help_text="userRequest.user.id (botUserKey).")
    plusfriend_user_key = models.CharField(max_length=100, blank=True)
    app_user_id = models.CharField(max_length=100, blank=True)
    is_friend = models.BooleanField(default=False)
    end_user = models.ForeignKey("endusers.EndUser", on_delete=models.CASCADE, related_name="kakao_users")
    session = models.ForeignKey(
        "runtime.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The current conversation.",
    )
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.NONE, blank=True)
    mode_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = "Kakao user"
        constraints = [models.UniqueConstraint(fields=["bot", "user_key"], name="kakao_user_unique_key")]

    def __str__(self) -> str:
        return f"{self.user_key[:12]}… ({self.bot.name})"


class CallbackTask(models.Model):
    """The delivery of one answer: one row per callback token (unique on its SHA-256).

    Synchronous answers that ran out of time get a row too (mode `sync`, no token), so the
    held answer reaches the user with their next message.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSING = "processing", "processing"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        EXPIRED = "expired", "expired"
        HELD = "held", "held for the next message"

    class Mode(models.TextChoices):
        CALLBACK = "callback", "callback"
        SYNC = "sync", "synchronous"

    class Kind(models.TextChoices):
        ANSWER = "answer", "answer"
        STILL_WORKING = "still_working", "still working"
        APOLOGY = "apology", "apology"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    bot = models.ForeignKey(KakaoBot, on_delete=models.CASCADE, related_name="callback_tasks")
    kakao_user = models.ForeignKey(KakaoUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    turn = models.ForeignKey("runtime.Turn", on_delete=models.CASCADE, related_name="kakao_tasks")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.CALLBACK)
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    callback_url = models.TextField(blank=True, help_text="Kept verbatim: re-encoding breaks the token.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField()
    not_before = models.DateTimeField(help_text="Receipt + the settle time.")
    deadline = models.DateTimeField(help_text="Receipt + 55 s: nothing is posted later.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    post_started_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Set before each POST and cleared once its outcome is recorded: a post in flight.",
    )
    posted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    response_kind = models.CharField(max_length=16, choices=Kind.choices, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    kakao_task_id = models.CharField(max_length=100, blank=True)
    kakao_status = models.CharField(max_length=16, blank=True)
    kakao_message = models.CharField(max_length=500, blank=True)
    last_error = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    held_delivered_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="delivered_held",
        help_text="The later delivery that carried this held answer.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "callback task"
        indexes = [
            models.Index(fields=["organization", "status", "-received_at"], name="kakao_task_org_status_idx"),
            models.Index(fields=["status", "deadline"], name="kakao_task_status_deadline_idx"),
            models.Index(fields=["kakao_user", "status"], name="kakao_task_user_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mode} task {self.id} ({self.status})"


class KakaoEvent(models.Model):
    """The channel's event log: conversation starts, name changes, callback outcomes, security events."""

    class Kind(models.TextChoices):
        CONVERSATION_START = "conversation_start", "conversation started"
        NAME_SET = "name_set", "name set"
        NAME_CHANGE_MODE = "name_change_mode", "name change started"
        NAME_CHANGE_CANCELLED = "name_change_cancelled", "name change cancelled"
        CALLBACK_DELIVERED = "callback_delivered", "callback delivered"
        CALLBACK_FAILED = "callback_failed", "callback failed"
        CALLBACK_EXPIRED = "callback_expired", "callback expired"
        ANSWER_HELD = "answer_held", "answer held for the next message"
        HELD_DELIVERED = "held_delivered", "held answer delivered"
        CALLBACK_URL_REJECTED = "callback_url_rejected", "callback URL rejected (security)"
        BROKER_UNREACHABLE = "broker_unreachable", "broker unreachable"
        SYNC_ANSWER = "sync_answer", "answered synchronously"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    bot = models.ForeignKey(KakaoBot, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    kakao_user = models.ForeignKey(KakaoUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    session = models.ForeignKey("runtime.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    task = models.ForeignKey(CallbackTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "Kakao event"
        indexes = [models.Index(fields=["organization", "kind", "-created_at"], name="kakao_event_org_kind_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M:%S}"
