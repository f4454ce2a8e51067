"""Mattermost (Mchat) channel: bots, the worker's live status, user/channel/thread mappings, the inbound
ledger that makes every post answered once, the outbox of replies, and the audit of mapping changes."""

from __future__ import annotations

import uuid

from django.db import models


class MattermostBot(models.Model):
    """One Mattermost bot account this platform answers as. The token is write-only (admin, APIs, logs)."""

    class Mode(models.TextChoices):
        AUTO = "auto", "auto (WebSocket, polling when it cannot connect)"
        WEBSOCKET = "websocket", "WebSocket only"
        POLLING = "polling", "polling only"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="mattermost_bots")
    agent = models.ForeignKey("runtime.Agent", on_delete=models.PROTECT, related_name="mattermost_bots")
    name = models.CharField(max_length=100)
    server_url = models.URLField(max_length=300, help_text="e.g. https://mchat.example.com (without /api/v4).")
    token = models.CharField(max_length=200, help_text="The bot account's access token. Never shown again.")
    verify_tls = models.BooleanField(default=True, help_text="Verify the server's TLS certificate.")
    ca_bundle_path = models.CharField(max_length=500, blank=True,
                                      help_text="A CA bundle file for an internal certificate authority.")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.AUTO)
    polling_interval_seconds = models.FloatField(default=2.0)
    mention_name = models.CharField(max_length=64, blank=True,
                                    help_text="The name people mention (without @); empty = the bot's username.")
    allowed_team_ids = models.JSONField(default=list, blank=True, help_text="Empty: every team the bot is in.")
    allowed_channel_ids = models.JSONField(default=list, blank=True, help_text="Empty: every channel the bot is in.")
    slash_command_tokens = models.JSONField(
        default=list, blank=True, help_text="Tokens of the custom slash commands pointing at /mchat/commands.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        verbose_name = "Mattermost bot"
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="mchat_bot_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.server_url})"

    def __repr__(self) -> str:  # never the token
        return f"<MattermostBot {self.pk} {self.name!r}>"

    @property
    def server_host(self) -> str:
        from urllib.parse import urlsplit

        return (urlsplit(self.server_url).netloc or self.server_url).lower()


class WorkerStatus(models.Model):
    """What the worker serving a bot reports (kept apart from the bot so an admin save never clobbers it)."""

    class State(models.TextChoices):
        STARTING = "starting", "starting"
        WEBSOCKET = "websocket", "WebSocket"
        POLLING = "polling", "polling"
        DOWN = "down", "Mattermost unreachable"
        UNHEALTHY = "unhealthy", "token rejected (401)"
        STANDBY = "standby", "standby"
        STOPPED = "stopped", "stopped"

    bot = models.OneToOneField(MattermostBot, on_delete=models.CASCADE, related_name="status")
    state = models.CharField(max_length=12, choices=State.choices, default=State.STOPPED)
    auth_ok = models.BooleanField(null=True)
    auth_error = models.CharField(max_length=300, blank=True)
    bot_user_id = models.CharField(max_length=26, blank=True)
    bot_username = models.CharField(max_length=64, blank=True)
    connection_id = models.CharField(max_length=64, blank=True)
    last_seq = models.BigIntegerField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    reconnects = models.PositiveIntegerField(default=0)
    worker_label = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Mattermost worker status"
        verbose_name_plural = "Mattermost worker status"

    def __str__(self) -> str:
        return f"{self.bot_id}: {self.state}"


class UserMapping(models.Model):
    """A Mattermost user of one bot and the end user behind them (pinned to the Mattermost user id)."""

    class LinkedBy(models.TextChoices):
        MANUAL = "manual", "manual (operator)"
        VERIFIED_EMAIL = "verified_email", "verified email / SSO"
        CREATED = "created", "new end user"

    bot = models.ForeignKey(MattermostBot, on_delete=models.CASCADE, related_name="user_mappings")
    mchat_user_id = models.CharField(max_length=26)
    username = models.CharField(max_length=64, blank=True)
    email = models.CharField(max_length=254, blank=True)
    email_verified = models.BooleanField(default=False)
    auth_service = models.CharField(max_length=32, blank=True)
    end_user = models.ForeignKey("endusers.EndUser", on_delete=models.CASCADE, related_name="mchat_users")
    linked_by = models.CharField(max_length=16, choices=LinkedBy.choices, default=LinkedBy.CREATED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "mchat_user_mapping"
        ordering = ["username"]
        verbose_name = "Mattermost user"
        constraints = [models.UniqueConstraint(fields=["bot", "mchat_user_id"], name="mchat_user_unique_id")]

    def __str__(self) -> str:
        return f"@{self.username or self.mchat_user_id}"


class ChannelMapping(models.Model):
    """A Mattermost channel the bot is in. A DM channel is one session; channel threads map in ThreadMapping."""

    class Type(models.TextChoices):
        OPEN = "O", "public"
        PRIVATE = "P", "private"
        DIRECT = "D", "direct message"
        GROUP = "G", "group message"

    bot = models.ForeignKey(MattermostBot, on_delete=models.CASCADE, related_name="channel_mappings")
    mchat_channel_id = models.CharField(max_length=26)
    name = models.CharField(max_length=64, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    team_id = models.CharField(max_length=26, blank=True)
    channel_type = models.CharField(max_length=1, choices=Type.choices, default=Type.OPEN)
    session = models.ForeignKey("runtime.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="DMs: the conversation of this channel.")
    auto_reply = models.BooleanField(default=False, help_text="Answer every post, not only mentions (off by default).")
    cursor_ms = models.BigIntegerField(default=0, help_text="Newest post update time seen (ms), for REST catch-up.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "mchat_channel_mapping"
        ordering = ["name"]
        verbose_name = "Mattermost channel"
        constraints = [models.UniqueConstraint(fields=["bot", "mchat_channel_id"], name="mchat_channel_unique_id")]

    def __str__(self) -> str:
        return self.display_name or self.name or self.mchat_channel_id


class ThreadMapping(models.Model):
    """One channel thread = one conversation."""

    bot = models.ForeignKey(MattermostBot, on_delete=models.CASCADE, related_name="thread_mappings")
    channel = models.ForeignKey(ChannelMapping, on_delete=models.CASCADE, related_name="threads")
    root_post_id = models.CharField(max_length=26)
    session = models.ForeignKey("runtime.Session", on_delete=models.CASCADE, related_name="+")
    answered = models.BooleanField(default=False, help_text="The bot has answered in this thread.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Mattermost thread"
        constraints = [models.UniqueConstraint(fields=["bot", "root_post_id"], name="mchat_thread_unique_root")]

    def __str__(self) -> str:
        return f"thread {self.root_post_id}"


class InboundPost(models.Model):
    """The ledger: every post the worker sees, once (WebSocket, polling, replay and restart all pass here)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "received"
        PROCESSING = "processing", "processing"
        ANSWERED = "answered", "answered"
        IGNORED = "ignored", "ignored"
        FAILED = "failed", "failed"

    bot = models.ForeignKey(MattermostBot, on_delete=models.CASCADE, related_name="inbound_posts")
    post_id = models.CharField(max_length=26)
    channel_id = models.CharField(max_length=26)
    root_id = models.CharField(max_length=26, blank=True)
    user_id = models.CharField(max_length=26, blank=True)
    create_at_ms = models.BigIntegerField(default=0)
    via = models.CharField(max_length=12, blank=True, help_text="websocket, polling or catchup.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    reason = models.CharField(max_length=40, blank=True, help_text="Why it was ignored or failed.")
    turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "inbound post"
        constraints = [models.UniqueConstraint(fields=["bot", "post_id"], name="mchat_inbound_unique_post")]
        indexes = [models.Index(fields=["bot", "status"], name="mchat_inbound_bot_status_idx")]

    def __str__(self) -> str:
        return f"{self.post_id} ({self.status})"


class OutboxPost(models.Model):
    """One logical reply post: created once (same pending_post_id across retries), then edited as it streams."""

    class Status(models.TextChoices):
        PENDING = "pending", "waiting to be sent"
        STREAMING = "streaming", "streaming"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    bot = models.ForeignKey(MattermostBot, on_delete=models.CASCADE, related_name="outbox")
    inbound = models.ForeignKey(InboundPost, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    part = models.PositiveSmallIntegerField(default=0, help_text="Index of this post within the reply.")
    channel_id = models.CharField(max_length=26)
    root_id = models.CharField(max_length=26, blank=True)
    text = models.TextField(blank=True)
    pending_post_id = models.CharField(max_length=64)
    post_id = models.CharField(max_length=26, blank=True, help_text="The post created in Mattermost.")
    post_ids = models.JSONField(default=list, blank=True, help_text="Every post created for this reply part.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "part"]
        verbose_name = "outbox post"
        indexes = [models.Index(fields=["bot", "status", "created_at"], name="mchat_outbox_bot_status_idx")]

    def __str__(self) -> str:
        return f"reply {self.pending_post_id} ({self.status})"


class MappingAudit(models.Model):
    """Who changed which mapping, when (operator APIs and admin)."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    bot = models.ForeignKey(MattermostBot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=40)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "mapping change"

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"
