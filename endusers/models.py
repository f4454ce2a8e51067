"""End users (one customer across channels), their identities, timeline index and memories."""

from __future__ import annotations

from django.db import models

from runtime import storage


class EndUser(models.Model):
    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="end_users")
    display_name = storage.CharField(max_length=100, blank=True)
    profile = storage.JSONField(default=dict, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from")
    merged_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True, help_text="Personal data erased; counts kept.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "A_end_users"
        ordering = ["-last_seen_at"]
        verbose_name = "end user"
        indexes = [
            # The contacts list: current (not merged) end users, newest activity first; also serves its count.
            models.Index(fields=["organization", "-last_seen_at"], name="enduser_org_current_idx",
                         condition=models.Q(merged_into__isnull=True)),
        ]

    def __str__(self) -> str:
        from django.utils.translation import gettext

        return self.display_name or gettext("end user #%(id)s") % {"id": self.pk}


class Identity(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "email"
        PHONE = "phone", "phone"
        EXTERNAL_ID = "external_id", "external id"
        VISITOR = "visitor", "widget visitor"
        KAKAO = "kakao", "Kakao"
        MCHAT = "mchat", "Mattermost"
        ACCOUNT = "account", "mejai account (assistant)"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="identities")
    kind = storage.CharField(max_length=16, choices=Kind.choices)
    value = storage.CharField(max_length=255, help_text="Normalized value.")
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "A_end_user_identities"
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind", "value"], name="identity_unique_value"),
        ]

    def __str__(self) -> str:
        from endusers.privacy import mask_identity

        return f"{self.kind}:{mask_identity(kind=self.kind, value=self.value)}"


class EndUserSession(models.Model):
    """One conversation session of an end user (any channel); the timeline's first level."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="timeline_sessions")
    session = models.OneToOneField("runtime.Session", on_delete=models.CASCADE, related_name="end_user_index")
    channel = storage.CharField(max_length=20)
    message_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        db_table = "A_end_user_sessions"
        ordering = ["-last_seen_at"]
        verbose_name = "end-user session"
        indexes = [models.Index(fields=["end_user", "-last_seen_at"], name="eusession_user_seen_idx")]

    def __str__(self) -> str:
        return f"{self.channel} session {self.session_id}"


class EndUserMessage(models.Model):
    """A per-customer timeline index row pointing at a turn; the text stays in D_conv_turns."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="timeline_messages")
    session = models.ForeignKey("runtime.Session", on_delete=models.CASCADE, related_name="+")
    turn = models.OneToOneField("runtime.Turn", on_delete=models.CASCADE, related_name="end_user_index")
    channel = storage.CharField(max_length=20)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "A_end_user_messages"
        ordering = ["-created_at"]
        verbose_name = "end-user message"
        indexes = [models.Index(fields=["end_user", "-created_at"], name="eumessage_user_created_idx")]

    def __str__(self) -> str:
        return f"message {self.turn_id}"


class Memory(models.Model):
    """Something we know about an end user (or, without end user, about the whole organization)."""

    class Kind(models.TextChoices):
        FACT = "fact", "fact"
        PREFERENCE = "preference", "preference"
        PROFILE = "profile", "profile"

    class Source(models.TextChoices):
        COMMAND = "command", "/remember command"
        EXTRACTED = "extracted", "extracted from a conversation"
        RULE = "rule", "captured by rules"
        API = "api", "API"
        ADMIN = "admin", "admin"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user = models.ForeignKey(
        EndUser, null=True, blank=True, on_delete=models.CASCADE, related_name="memories",
        help_text="Empty: an organization-wide memory.",
    )
    text = storage.TextField()
    is_public = models.BooleanField(
        default=False,
        help_text="Organization-wide memories only: may the bot tell it to customers (shipping policy, opening "
        "hours)? Internal ones (discount codes, notes for staff) never reach a customer's conversation.",
    )
    kind = storage.CharField(max_length=12, choices=Kind.choices, default=Kind.FACT)
    key = storage.CharField(max_length=32, blank=True, help_text="Profile attribute this memory holds (name, email, phone).")
    source = storage.CharField(max_length=12, choices=Source.choices, default=Source.COMMAND)
    source_turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "A_end_user_memories"
        ordering = ["-created_at"]
        verbose_name_plural = "memories"
        indexes = [
            models.Index(fields=["end_user", "-created_at"], name="memory_user_created_idx",
                         condition=models.Q(superseded_by__isnull=True, deleted_at__isnull=True)),
            models.Index(fields=["organization", "-created_at"], name="memory_org_created_idx",
                         condition=models.Q(end_user__isnull=True)),
        ]

    def __str__(self) -> str:
        from endusers.privacy import mask_text

        return mask_text(self.text[:60])

    @property
    def is_active(self) -> bool:
        return self.superseded_by_id is None and self.deleted_at is None


class MemoryEvent(models.Model):
    """The history of a memory: added, updated (superseded), deleted, moved by a merge."""

    class Action(models.TextChoices):
        ADD = "add", "added"
        UPDATE = "update", "updated"
        DELETE = "delete", "deleted"
        MERGE = "merge", "moved by a merge"

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="events")
    action = storage.CharField(max_length=8, choices=Action.choices)
    old_text = storage.TextField(blank=True)
    new_text = storage.TextField(blank=True)
    actor = storage.CharField(max_length=60, blank=True, help_text="command, extraction, api key, admin user…")
    turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "A_end_user_memory_events"
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} memory {self.memory_id}"


class ErasureRecord(models.Model):
    """Audit of an erasure: who erased which end user, and the anonymous counts kept."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user_id_erased = models.BigIntegerField(db_index=True)
    actor = storage.CharField(max_length=150)
    counts = storage.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "A_end_user_erasures"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"erasure of end user {self.end_user_id_erased}"


class MergeRecord(models.Model):
    """Audit of a merge of one end user into another."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="+")
    actor = storage.CharField(max_length=150, blank=True)
    counts = storage.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "A_end_user_merges"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"merge {self.source_id} -> {self.target_id}"
