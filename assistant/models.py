"""Realtime assistant: who owns a client_id, the order of its turns, images, delegated tasks, reports."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AssistantClient(models.Model):
    """A `client_id` of `ws/chat/{client_id}`; it belongs to the first user who used it."""

    client_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assistant_clients")
    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="assistant_clients")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return self.client_id


class ClientTurn(models.Model):
    """A turn sent through a client_id: the client's FIFO queue (answered in `id` order)."""

    client = models.ForeignKey(AssistantClient, on_delete=models.CASCADE, related_name="turns")
    turn = models.OneToOneField("runtime.Turn", on_delete=models.CASCADE, related_name="assistant_entry")
    message_id = models.CharField(max_length=128, blank=True, help_text="The client's `id` of the chat frame.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.client_id} turn {self.turn_id}"


class TurnImage(models.Model):
    """An image sent with a chat: the bytes (checked and sniffed) or an https URL the model fetches."""

    turn = models.ForeignKey("runtime.Turn", on_delete=models.CASCADE, related_name="assistant_images")
    position = models.PositiveSmallIntegerField()
    content_type = models.CharField(max_length=20, blank=True)
    size = models.PositiveIntegerField(default=0, help_text="Decoded bytes (0 for a URL).")
    data = models.BinaryField(null=True, blank=True)
    url = models.URLField(max_length=2048, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["turn", "position"]
        constraints = [models.UniqueConstraint(fields=["turn", "position"], name="turn_image_unique_position")]

    def __str__(self) -> str:
        return f"image {self.position} of {self.turn_id}"


class DelegatedTask(models.Model):
    """A longer job an agent was asked to do (`/task <지시>`): its own turn, run by a Celery job."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(AssistantClient, on_delete=models.CASCADE, related_name="tasks")
    agent = models.ForeignKey("runtime.Agent", on_delete=models.CASCADE, related_name="+")
    instruction = models.TextField()
    source_turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    result_turn = models.ForeignKey("runtime.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"task {str(self.id)[:8]} ({self.status})"


class Report(models.Model):
    """An `auto_report` for a client: from a delegated task or an external system; delivered once."""

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(AssistantClient, null=True, blank=True, on_delete=models.CASCADE, related_name="reports")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="+", help_text="For a user: the first of their clients to connect gets it.")
    task = models.ForeignKey(DelegatedTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    external_task_id = models.CharField(max_length=100, blank=True)
    content = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"report {self.pk} ({'delivered' if self.delivered_at else 'pending'})"

    @property
    def reported_task_id(self) -> str | None:
        """The `task_id` of its frame: the delegated task's, or the external system's own."""
        return str(self.task_id) if self.task_id else (self.external_task_id or None)
