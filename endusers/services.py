"""End-user services: recognising one customer across channels."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from endusers.models import EndUser, Identity


def identity_resolve(*, organization, kind: str, value: str, verified: bool, display_name: str = "") -> EndUser:
    """Find or create the end user holding this identity.

    Foundation version: exact values; the end-user issue adds normalization and claim rules.
    """
    value = value.strip()
    identity = Identity.objects.select_related("end_user").filter(organization=organization, kind=kind, value=value).first()
    if identity is not None:
        end_user = identity.end_user
        while end_user.merged_into_id:
            end_user = end_user.merged_into
        EndUser.objects.filter(pk=end_user.pk).update(last_seen_at=timezone.now())
        return end_user
    try:
        with transaction.atomic():
            end_user = EndUser.objects.create(organization=organization, display_name=display_name[:100])
            Identity.objects.create(organization=organization, end_user=end_user, kind=kind, value=value, verified=verified)
            return end_user
    except IntegrityError:
        # Another request created it first.
        return Identity.objects.select_related("end_user").get(organization=organization, kind=kind, value=value).end_user
