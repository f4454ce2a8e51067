"""End users (one customer across channels) and the identities that recognise them."""

from __future__ import annotations

from django.db import models


class EndUser(models.Model):
    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="end_users")
    display_name = models.CharField(max_length=100, blank=True)
    profile = models.JSONField(default=dict, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "A_end_users"
        ordering = ["-last_seen_at"]
        verbose_name = "end user"

    def __str__(self) -> str:
        return self.display_name or f"end user #{self.pk}"


class Identity(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "email"
        PHONE = "phone", "phone"
        EXTERNAL_ID = "external_id", "external id"
        VISITOR = "visitor", "widget visitor"
        KAKAO = "kakao", "Kakao"
        MCHAT = "mchat", "Mattermost"

    organization = models.ForeignKey("runtime.Organization", on_delete=models.CASCADE, related_name="+")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.CharField(max_length=255, help_text="Normalized value.")
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
        return f"{self.kind}:{self.value}"
