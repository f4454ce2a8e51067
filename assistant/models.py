"""Realtime assistant: who owns a client_id, and the order of its turns."""

from __future__ import annotations

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
