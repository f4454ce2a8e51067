"""Organizations, agents, versioned prompts, API keys, conversation sessions and turns."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from runtime import storage


class Organization(models.Model):
    slug = storage.SlugField(max_length=64, unique=True)
    name = storage.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Which organization a staff user works in (quickstart page, admin scoping)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mejai_membership")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization}"


class ApiKey(models.Model):
    """A server-to-server key. Only its SHA-256 is stored; the key is shown once."""

    PREFIX = "mj_sk_"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = storage.CharField(max_length=100)
    key_prefix = storage.CharField(max_length=16, help_text="First characters, to recognise a key.")
    key_hash = storage.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PromptTemplate(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="prompt_templates")
    name = storage.CharField(max_length=100)
    description = storage.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="prompt_template_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def active_version(self) -> PromptVersion | None:
        return self.versions.filter(is_active=True).first()


class PromptVersion(models.Model):
    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    text = storage.TextField()
    note = storage.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=False)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["template", "version"], name="prompt_version_unique_number"),
            # Exactly one active version per template is kept by prompt_version_activate;
            # the database refuses a second one.
            models.UniqueConstraint(
                fields=["template"], condition=Q(is_active=True), name="prompt_version_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.version}"


class PromptAudit(models.Model):
    class Action(models.TextChoices):
        CREATE = "create", "created"
        ACTIVATE = "activate", "activated"
        ROLLBACK = "rollback", "rolled back"

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="audit")
    version = models.ForeignKey(PromptVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    previous_version = models.ForeignKey(PromptVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    action = storage.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = storage.CharField(max_length=150, blank=True, help_text="API key or user that acted.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.template_id} at {self.created_at:%Y-%m-%d %H:%M}"


class Agent(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = storage.CharField(max_length=100)
    model = storage.CharField(max_length=100, blank=True, help_text="Empty: the LLM_MODEL setting.")
    temperature = models.FloatField(default=0.2)
    max_tokens = models.PositiveIntegerField(default=1000)
    is_active = models.BooleanField(default=True)
    tools_enabled = models.BooleanField(
        default=True, help_text="Let the model add quick replies and forms through tool calls."
    )
    llm_options = storage.JSONField(
        default=dict, blank=True,
        help_text='Request parameters for this agent\'s model server, e.g. {"omit": ["stream_options"], '
        '"max_tokens_parameter": "max_completion_tokens"}. See docs/model-compatibility.md.',
    )
    prompt = models.ForeignKey(
        PromptTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="agents",
        help_text="System prompt; its active version is used.",
    )
    extra_form_fields = storage.JSONField(
        default=list, blank=True,
        help_text='Form fields the bot may ask for besides name, email, phone and order_id, e.g. ["company"]. '
        "Secret-like fields (password, card number…) are never asked for.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="agent_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def model_name(self) -> str:
        return self.model or settings.LLM_MODEL

    def clean(self):
        from django.core.exceptions import ValidationError

        from runtime.clients.compat import agent_llm_options_clean
        from runtime.forms import FIELD_NAME, secret_like

        try:
            self.llm_options = agent_llm_options_clean(self.llm_options)
        except ValueError as exc:
            raise ValidationError({"llm_options": str(exc)}) from exc
        fields = self.extra_form_fields
        if fields in (None, ""):
            self.extra_form_fields = []
            return
        if not isinstance(fields, list) or not all(isinstance(f, str) and FIELD_NAME.match(f) for f in fields):
            raise ValidationError({"extra_form_fields": 'A list of field names such as ["company", "order_date"] '
                                                        "(lower-case letters, digits and _)."})
        if any(secret_like(f) for f in fields):
            raise ValidationError({"extra_form_fields": "Secret-like fields (password, card number…) cannot be asked for."})


class Channel(models.TextChoices):
    WEB_WIDGET = "web_widget", "web widget"
    ASSISTANT = "assistant", "assistant"
    KAKAO = "kakao", "Kakao"
    MCHAT = "mchat", "Mattermost"
    API = "api", "API"


class Session(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "open"
        CLOSED = "closed", "closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sessions")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    channel = storage.CharField(max_length=20, choices=Channel.choices)
    end_user = models.ForeignKey(
        "endusers.EndUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversation_sessions"
    )
    metadata = storage.JSONField(default=dict, blank=True)
    status = storage.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    last_seq = models.PositiveIntegerField(default=0, help_text="Sequence number of the latest turn.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "D_conv_sessions"
        ordering = ["-last_activity_at"]
        indexes = [models.Index(fields=["organization", "channel", "-last_activity_at"], name="session_org_channel_idx")]

    def __str__(self) -> str:
        return f"{self.channel} {self.id}"


class Turn(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        STREAMING = "streaming", "streaming"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        INTERRUPTED = "interrupted", "interrupted (client left)"
        STORED = "stored", "stored without a reply"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.INTERRUPTED, Status.STORED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="turns")
    seq = models.PositiveIntegerField()
    author = models.ForeignKey(
        "endusers.EndUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="authored_turns"
    )
    user_text = storage.TextField()
    client_message_id = storage.CharField(max_length=128, blank=True)
    # sha256(organization, channel principal, client_message_id): a retry finds its turn.
    idempotency_key = storage.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    reply_text = storage.TextField(blank=True)
    payload = storage.JSONField(default=dict, blank=True)
    status = storage.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    handled_by = storage.CharField(max_length=40, blank=True, help_text="llm, or the command that answered.")
    model = storage.CharField(max_length=100, blank=True)
    prompt_version = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.SET_NULL)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = storage.CharField(max_length=40, blank=True)
    error = storage.TextField(blank=True)
    # For operators only, never sent to a channel: the upstream error (masked, bounded), warnings
    # (unusable tool calls, reasoning without its tag), finish_reason, reasoning length, parameters.
    diagnostics = storage.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "D_conv_turns"
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="turn_unique_seq")]

    def __str__(self) -> str:
        return f"turn {self.seq} of {self.session_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Conversation(Session):
    """A session as operators read it: the conversations list and its transcript (admin, read-only)."""

    class Meta:
        proxy = True
        verbose_name = "conversation"
        verbose_name_plural = "conversations"


class DailyStat(models.Model):
    """The overview's daily roll-up: one row per organization × channel × agent × day (in TIME_ZONE).

    Written only by mejai.overview.rollup_day (whole days, recomputed from D_conv_turns, never
    incremented), so it can always be rebuilt (`manage.py overview_rollup`). Turns of preview
    sessions ("test this agent", the widget preview) are not counted. `conversations` counts the
    conversations *started* that day (their first turn), so sums over days stay exact.
    `latency_histogram` maps a bucket's lower bound in ms (as a string) to the number of completed
    model answers whose latency fell in it (bucket widths: mejai.overview.latency_bucket).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=20)
    day = models.DateField()
    conversations = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=dict, blank=True)  # {"llm_timeout": 3, ...}
    latency_histogram = models.JSONField(default=dict, blank=True)  # {"300": 12, "1050": 4, ...}
    callbacks_delivered = models.PositiveIntegerField(default=0)  # deferred replies posted (Kakao callbacks)
    callbacks_failed = models.PositiveIntegerField(default=0)  # ... failed or expired

    class Meta:
        db_table = "F_conv_daily_stats"
        ordering = ["organization", "-day"]
        verbose_name = "daily statistics"
        verbose_name_plural = "daily statistics"
        constraints = [models.UniqueConstraint(fields=["organization", "day", "channel", "agent"],
                                               name="daily_stat_unique")]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.channel} {self.day}"


class DailyStatDay(models.Model):
    """Which days DailyStat holds: `rolled_at` is when that day's roll-up read the turns; a turn of the
    day finishing later sets `changed_at` (turn_finished receiver), and `unfinished` counts the turns
    and Kakao callbacks still open at roll-up time. The day is rolled up again while changed_at >= rolled_at or unfinished > 0."""

    day = models.DateField(primary_key=True)
    rolled_at = models.DateTimeField()
    changed_at = models.DateTimeField(null=True, blank=True)
    unfinished = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "F_conv_daily_stat_days"
        ordering = ["-day"]

    def __str__(self) -> str:
        return str(self.day)
