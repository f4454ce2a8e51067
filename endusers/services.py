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


def identity_claim(*, end_user: EndUser, kind: str, value: str) -> Identity | None:
    """Record an unverified identity the person typed (email, phone, name) on *their own* end user.

    A claim never attaches anyone to another person's end user: when the value is already held
    by someone else, it is kept only in this end user's profile as an unverified claim.
    """
    value = value.strip()
    if not value:
        return None
    organization_id = end_user.organization_id
    held = Identity.objects.filter(organization_id=organization_id, kind=kind, value=value).first()
    if held is not None:
        if held.end_user_id != end_user.pk:
            claims = end_user.profile.setdefault("claims", {})
            claims[kind] = value
            end_user.save(update_fields=["profile"])
            return None
        return held
    try:
        with transaction.atomic():
            return Identity.objects.create(
                organization_id=organization_id, end_user=end_user, kind=kind, value=value, verified=False
            )
    except IntegrityError:
        return None


def profile_name_set(*, end_user: EndUser, name: str) -> EndUser:
    """Set the person's name (display name and profile)."""
    from endusers.rules import name_valid

    from mejai.errors import ApiError

    name = name.strip()
    if not name_valid(name):
        raise ApiError("invalid_name", "이름은 한글·영문·숫자 1–20자로 알려 주세요. (Names are 1–20 letters or digits.)", 400, field="name")
    end_user.display_name = name
    end_user.profile["name"] = name
    end_user.save(update_fields=["display_name", "profile"])
    return end_user
