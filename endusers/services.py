"""End-user services: recognising one customer across channels, their timeline and their memories.

Trust rule (docs/endusers.md): a *verified* identity links to the end user that holds it; a
*claimed* one is stored unverified on the caller's own end user and never attaches anyone to
another person's end user, sessions or memories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from endusers import selectors
from endusers.conf import MEMORY_MAX_CHARS
from endusers.models import (
    EndUser,
    EndUserMessage,
    EndUserSession,
    ErasureRecord,
    Identity,
    Memory,
    MemoryEvent,
    MergeRecord,
)
from endusers.normalize import identity_value_normalize
from mejai.errors import ApiError

logger = logging.getLogger(__name__)

# Identities that are a secret key of their own (a random widget visitor id): holding the value
# is the proof, so they are looked up even when not verified.
BEARER_KINDS = {Identity.Kind.VISITOR}
PROFILE_KEYS = {"name": "이름", "email": "이메일", "phone": "전화번호"}


# --- end users and identities --------------------------------------------------------------

def _touch(end_user: EndUser) -> None:
    EndUser.objects.filter(pk=end_user.pk).update(last_seen_at=timezone.now())


def identity_resolve(*, organization, kind: str, value: str, verified: bool, display_name: str = "") -> EndUser:
    """Find or create the end user for a conversation from one identity.

    Verified identities (Kakao/Mattermost ids, an API caller's external_id, an HMAC-signed widget
    user) link to the end user holding them. Unverified resolution is only for bearer keys (the
    widget's random visitor id); use identity_claim for anything a person merely typed.
    A verified identity found only as someone's unverified claim is taken away from that claim
    into an end user of its own, so a claim can never capture the real person.
    """
    if not verified and kind not in BEARER_KINDS:
        raise ValueError(f"identity_resolve(kind={kind!r}) needs verified=True; record typed values with identity_claim")
    value = identity_value_normalize(kind=kind, value=value)
    display_name = (display_name or "").strip()[:100]
    identity = Identity.objects.select_related("end_user").filter(organization=organization, kind=kind, value=value).first()
    if identity is not None and (identity.verified or not verified or kind in BEARER_KINDS):
        end_user = selectors.end_user_canonical(identity.end_user)
        if verified and not identity.verified:
            Identity.objects.filter(pk=identity.pk).update(verified=True)
        if display_name and not end_user.display_name:
            end_user.display_name = display_name
            end_user.save(update_fields=["display_name"])
        _touch(end_user)
        return end_user
    try:
        with transaction.atomic():
            end_user = EndUser.objects.create(organization=organization, display_name=display_name)
            if identity is not None:
                # An unverified claim of this value: the verified holder gets it; the claimant keeps a note.
                claimant = EndUser.objects.select_for_update().get(pk=identity.end_user_id)
                claimant.profile.setdefault("claims", {})[kind] = value
                claimant.save(update_fields=["profile"])
                updated = Identity.objects.filter(pk=identity.pk, verified=False).update(end_user=end_user, verified=True)
                if not updated:
                    raise IntegrityError("identity changed concurrently")
            else:
                Identity.objects.create(organization=organization, end_user=end_user, kind=kind, value=value, verified=verified)
            return end_user
    except IntegrityError:
        # Another request created or verified it first.
        identity = Identity.objects.select_related("end_user").get(organization=organization, kind=kind, value=value)
        return selectors.end_user_canonical(identity.end_user)


def identity_claim(*, end_user: EndUser, kind: str, value: str) -> Identity | None:
    """Record an unverified identity the person typed (email, phone, name) on *their own* end user.

    A claim never attaches anyone to another person's end user: when the value is already held
    by someone else it is kept only in this end user's profile (profile["claims"]), where
    `find_duplicate_end_users` can show it to an operator. Invalid emails or phones raise ApiError.
    Kind "name" sets the profile name (a claim too) and returns None.
    """
    if kind == "name":
        name = (value or "").strip()
        if name:
            profile_name_set(end_user=end_user, name=name)
        return None
    if not (value or "").strip():
        return None
    value = identity_value_normalize(kind=kind, value=value)
    end_user = selectors.end_user_canonical(end_user)
    organization_id = end_user.organization_id
    held = Identity.objects.filter(organization_id=organization_id, kind=kind, value=value).first()
    if held is not None and held.end_user_id != end_user.pk:
        with transaction.atomic():
            locked = EndUser.objects.select_for_update().get(pk=end_user.pk)
            locked.profile.setdefault("claims", {})[kind] = value
            locked.save(update_fields=["profile"])
            end_user.profile = locked.profile
        return None
    if held is None:
        try:
            with transaction.atomic():
                held = Identity.objects.create(organization_id=organization_id, end_user=end_user, kind=kind,
                                               value=value, verified=False)
        except IntegrityError:
            return None
    if kind in PROFILE_KEYS:
        _profile_fact_set(end_user=end_user, key=kind, value=value, source=Memory.Source.RULE)
    return held


def profile_name_set(*, end_user: EndUser, name: str, turn=None) -> EndUser:
    """Set the person's name (display name, profile, and a profile memory so it is searchable)."""
    from endusers.rules import name_normalize, name_valid

    name = name_normalize(name)
    if not name_valid(name):
        raise ApiError("invalid_name", "이름은 한글·영문·숫자 1–20자로 알려 주세요. (Names are 1–20 letters or digits.)", 400, field="name")
    end_user = selectors.end_user_canonical(end_user)
    with transaction.atomic():
        locked = EndUser.objects.select_for_update().get(pk=end_user.pk)
        locked.display_name = name
        locked.profile["name"] = name
        locked.save(update_fields=["display_name", "profile"])
        end_user.display_name, end_user.profile = locked.display_name, locked.profile
    _profile_fact_set(end_user=end_user, key="name", value=name, source=Memory.Source.RULE, turn=turn)
    return end_user


def _profile_fact_set(*, end_user: EndUser, key: str, value: str, source: str, turn=None) -> Memory:
    """Keep one active profile memory per attribute ('이름: 민수'); a new value supersedes the old."""
    text = f"{PROFILE_KEYS.get(key, key)}: {value}"
    with transaction.atomic():
        current = (
            Memory.objects.select_for_update()
            .filter(end_user=end_user, key=key, superseded_by__isnull=True, deleted_at__isnull=True)
            .first()
        )
        if current is not None:
            if current.text == text:
                return current
            return memory_update(memory=current, text=text, actor=source, turn=turn)
        return memory_add(end_user=end_user, text=text, kind=Memory.Kind.PROFILE, source=source, turn=turn, key=key,
                          actor=source)


def contact_upsert(
    *, organization, external_id: str = "", email: str = "", phone: str = "", display_name: str = ""
) -> tuple[EndUser, bool]:
    """Find or create the contact holding these identities (sent by the organization's server: verified).

    All values are validated before anything is written; identities held by two different
    end users are a conflict (merge them first), never a silent attach.
    """
    wanted = [(kind, identity_value_normalize(kind=kind, value=value))
              for kind, value in (("external_id", external_id), ("email", email), ("phone", phone)) if value]
    if not wanted:
        raise ApiError("identity_required", "Give at least one of external_id, email or phone.", 400, field="external_id")
    with transaction.atomic():
        held = {
            (i.kind, i.value): i
            for i in Identity.objects.select_related("end_user").filter(
                organization=organization, kind__in=[k for k, _ in wanted], value__in=[v for _, v in wanted])
            if (i.kind, i.value) in wanted
        }
        owners = {selectors.end_user_canonical(i.end_user).pk: selectors.end_user_canonical(i.end_user) for i in held.values() if i.verified}
        if len(owners) > 1:
            raise ApiError("identities_conflict", "These identities belong to different contacts; merge them first.",
                           409, extra={"contacts": sorted(owners)})
        created = not owners
        end_user = next(iter(owners.values())) if owners else EndUser.objects.create(organization=organization)
        for kind, value in wanted:
            identity = held.get((kind, value))
            if identity is None:
                Identity.objects.create(organization=organization, end_user=end_user, kind=kind, value=value, verified=True)
            elif not identity.verified:
                # Someone's unverified claim: the verified holder takes it, the claimant keeps a note.
                claimant = EndUser.objects.select_for_update().get(pk=identity.end_user_id)
                if claimant.pk != end_user.pk:
                    claimant.profile.setdefault("claims", {})[kind] = value
                    claimant.save(update_fields=["profile"])
                Identity.objects.filter(pk=identity.pk).update(end_user=end_user, verified=True)
        display_name = (display_name or "").strip()[:100]
        if display_name and display_name != end_user.display_name:
            end_user.display_name = display_name
            end_user.save(update_fields=["display_name"])
    return end_user, created


# --- timeline ----------------------------------------------------------------------------

def timeline_record(*, turn) -> EndUserMessage | None:
    """Index a stored turn on its end user's timeline (idempotent); None when nobody is known."""
    session = turn.session
    end_user_id = session.end_user_id or turn.author_id
    if not end_user_id:
        return None
    at = turn.created_at
    entry, _ = EndUserSession.objects.get_or_create(
        session_id=session.pk,
        defaults=dict(organization_id=session.organization_id, end_user_id=end_user_id, channel=session.channel,
                      first_seen_at=at, last_seen_at=at),
    )
    message, created = EndUserMessage.objects.get_or_create(
        turn_id=turn.pk,
        defaults=dict(organization_id=session.organization_id, end_user_id=entry.end_user_id, session_id=session.pk,
                      channel=session.channel, created_at=at),
    )
    if created:
        EndUserSession.objects.filter(pk=entry.pk).update(message_count=F("message_count") + 1,
                                                          last_seen_at=Greatest(F("last_seen_at"), at))
        EndUser.objects.filter(pk=entry.end_user_id).update(last_seen_at=Greatest(F("last_seen_at"), at))
    return message


# --- memories ----------------------------------------------------------------------------

def memory_text_validate(text) -> str:
    from runtime.text import text_clean

    if not isinstance(text, str):
        raise ApiError("invalid", "text must be a string.", 400, field="text")
    cleaned = " ".join(text_clean(text).split())
    if not cleaned:
        raise ApiError("empty_memory", "기억할 내용이 비어 있어요. (The memory text is empty.)", 400, field="text")
    if len(cleaned) > MEMORY_MAX_CHARS:
        raise ApiError(
            "memory_too_long",
            f"기억은 {MEMORY_MAX_CHARS}자 이하로 적어 주세요. (A memory is limited to {MEMORY_MAX_CHARS} characters.)",
            400, field="text", extra={"limit": MEMORY_MAX_CHARS},
        )
    return cleaned


def memory_add(
    *, text: str, end_user: EndUser | None = None, organization=None, kind: str = Memory.Kind.FACT,
    source: str = Memory.Source.COMMAND, turn=None, key: str = "", actor: str = "", is_public: bool = False,
) -> Memory:
    """Remember a fact about an end user, or an org-wide one (end_user=None, organization given).

    is_public (org-wide only): customers may be told it; otherwise it stays internal (staff only).
    """
    text = memory_text_validate(text)
    if kind not in Memory.Kind.values:
        raise ApiError("invalid", f"kind must be one of {', '.join(Memory.Kind.values)}.", 400, field="kind")
    if end_user is not None:
        end_user = selectors.end_user_canonical(end_user)
        organization_id = end_user.organization_id
    elif organization is not None:
        organization_id = organization.pk
    else:
        raise ValueError("memory_add needs an end user or an organization")
    with transaction.atomic():
        memory = Memory.objects.create(organization_id=organization_id, end_user=end_user, text=text, kind=kind,
                                       key=key, source=source, source_turn=turn,
                                       is_public=bool(is_public) and end_user is None)
        MemoryEvent.objects.create(memory=memory, action=MemoryEvent.Action.ADD, new_text=text, actor=actor or source,
                                   turn=turn)
    return memory


def memory_update(*, memory: Memory, text: str, actor: str = "", turn=None, kind: str | None = None) -> Memory:
    """Replace a memory's text: a new row supersedes the old one, which stays as history."""
    text = memory_text_validate(text)
    with transaction.atomic():
        old = Memory.objects.select_for_update().get(pk=memory.pk)
        if not old.is_active:
            raise ApiError("memory_not_found", "그 기억을 찾을 수 없어요. (Memory not found.)", 404)
        new = Memory.objects.create(organization_id=old.organization_id, end_user_id=old.end_user_id, text=text,
                                    kind=kind or old.kind, key=old.key, source=old.source, source_turn=turn or old.source_turn,
                                    is_public=old.is_public)
        Memory.objects.filter(pk=old.pk).update(superseded_by=new, updated_at=timezone.now())
        MemoryEvent.objects.create(memory=old, action=MemoryEvent.Action.UPDATE, old_text=old.text, new_text=text,
                                   actor=actor, turn=turn)
        MemoryEvent.objects.create(memory=new, action=MemoryEvent.Action.ADD, old_text=old.text, new_text=text,
                                   actor=actor, turn=turn)
    return new


def memory_delete(*, memory: Memory, actor: str = "", turn=None) -> Memory:
    with transaction.atomic():
        locked = Memory.objects.select_for_update().get(pk=memory.pk)
        if not locked.is_active:
            raise ApiError("memory_not_found", "그 기억을 찾을 수 없어요. (Memory not found.)", 404)
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["deleted_at", "updated_at"])
        MemoryEvent.objects.create(memory=locked, action=MemoryEvent.Action.DELETE, old_text=locked.text, actor=actor,
                                   turn=turn)
    return locked


def memory_forget(*, end_user: EndUser, memory_id, actor: str = "", turn=None) -> Memory:
    """Delete one of *this* end user's memories; another person's id is simply not found."""

    memory = selectors.memory_get_for_end_user(end_user=end_user, memory_id=memory_id)
    return memory_delete(memory=memory, actor=actor, turn=turn)


# --- merge -------------------------------------------------------------------------------
#
# Trust rule for merges (docs/security.md): a merge never hands a verified person's data to
# whoever holds a bearer key (a widget visitor id) or typed a claim. An end user is *verified* when
# it holds a verified identity that is not a bearer key. Merging into a verified person detaches
# the source's bearer and unverified identities to a new anonymous end user, so the visitor who
# typed the claim keeps nothing that reaches the merged record; a verified person is never merged
# into an unverified end user (its holder would get everything).

TRUST_VERIFIED = "verified"
TRUST_UNVERIFIED = "unverified"


def end_user_trust(end_user: EndUser) -> str:
    """`verified` when the end user holds a verified non-bearer identity, else `unverified`."""
    proven = Identity.objects.filter(end_user=end_user, verified=True).exclude(kind__in=BEARER_KINDS).exists()
    return TRUST_VERIFIED if proven else TRUST_UNVERIFIED


@dataclass
class MergePlan:
    """What a merge of `source` into `target` does, shown to the operator before they confirm."""

    source: EndUser
    target: EndUser
    source_trust: str
    target_trust: str
    moving: list[Identity]
    detached: list[Identity]  # bearer keys and unverified claims that do not follow into a verified person
    warnings: list[str]

    def as_dict(self) -> dict:
        from endusers.privacy import mask_identity

        def shown(identities):
            return [{"kind": i.kind, "value": mask_identity(kind=i.kind, value=i.value), "verified": i.verified}
                    for i in identities]

        return {
            "source": {"id": self.source.pk, "trust": self.source_trust},
            "target": {"id": self.target.pk, "trust": self.target_trust},
            "identities_moving": shown(self.moving),
            "identities_detached": shown(self.detached),
            "warnings": list(self.warnings),
        }


def _merge_refusal(source: EndUser, target: EndUser) -> ApiError | None:
    if source.pk == target.pk:
        return ApiError("merge_same", "An end user cannot be merged into itself.", 400, field="target")
    if source.organization_id != target.organization_id:
        return ApiError("merge_cross_organization", "End users of different organizations cannot be merged.", 400,
                        field="target")
    if target.merged_into_id:
        return ApiError("merge_into_merged", "The target was itself merged into another end user.", 400, field="target")
    if source.merged_into_id:
        return ApiError("merge_source_merged", "This end user was already merged into another one.", 400, field="source")
    if target.erased_at or source.erased_at:
        return ApiError("merge_erased", "An erased end user cannot be merged.", 400, field="target")
    return None


def merge_plan(*, source: EndUser, target: EndUser) -> MergePlan:
    """The plan of `end_user_merge(source, target)`; raises the ApiError the merge would raise.

    409 `merge_into_unverified`: a verified person cannot be merged into an unverified end user
    (whoever holds the latter's visitor key would get everything) — merge the other way.
    """
    if source.merged_into_id != target.pk or source.pk == target.pk:
        refusal = _merge_refusal(source, target)
        if refusal is not None:
            raise refusal
    source_trust, target_trust = end_user_trust(source), end_user_trust(target)
    if source_trust == TRUST_VERIFIED and target_trust != TRUST_VERIFIED:
        raise ApiError(
            "merge_into_unverified",
            f"확인된 사용자 #{source.pk}를 확인되지 않은 사용자 #{target.pk}에 합칠 수 없습니다. 반대로 합치세요. "
            f"(A verified end user cannot be merged into an unverified one: merge #{target.pk} into #{source.pk}.)",
            409, field="target",
        )
    identities = list(Identity.objects.filter(end_user=source).order_by("kind", "pk"))
    warnings: list[str] = []
    if target_trust == TRUST_VERIFIED:
        detached = [i for i in identities if i.kind in BEARER_KINDS or not i.verified]
        if source_trust != TRUST_VERIFIED:
            warnings.append(
                f"#{source.pk}는 확인되지 않은 사용자입니다(방문자 키·입력한 연락처뿐). 그 대화와 기억이 확인된 사용자 "
                f"#{target.pk}에게 옮겨집니다. 같은 사람이라는 증거가 있을 때만 합치세요. "
                f"(#{source.pk} is unverified — only a visitor key or typed contact details. Its conversations and "
                f"memories move to the verified #{target.pk}: merge only with proof they are the same person.)"
            )
    else:
        detached = []
        warnings.append(
            "두 사용자 모두 확인되지 않았습니다. 두 방문자 키가 모두 합쳐진 기록을 보게 됩니다. "
            "(Neither end user is verified: every visitor key of both will see the merged record.)"
        )
    if detached:
        warnings.append(
            f"방문자 키와 확인되지 않은 신원 {len(detached)}개는 옮기지 않고 새 익명 사용자에게 남깁니다. "
            f"({len(detached)} visitor key(s) and unverified identities stay with a new anonymous end user, "
            "so their holder reaches nothing of the merged record.)"
        )
    moving = [i for i in identities if i not in detached]
    return MergePlan(source, target, source_trust, target_trust, moving, detached, warnings)


def end_user_merge(*, source: EndUser, target: EndUser, actor: str = "") -> EndUser:
    """Move everything of `source` (identities, sessions, timeline, memories) to `target`, by the trust rule.

    Into a verified target, the source's bearer keys and unverified identities go to a new
    anonymous end user instead, and an unverified source's name and profile facts stay claims.
    Idempotent: merging a source already merged into this target returns the target.
    Errors: ApiError 400 (merge_same, merge_cross_organization, merge_into_merged,
    merge_source_merged, merge_erased), 409 merge_into_unverified.
    """
    refusal = _merge_refusal(source, target) if source.merged_into_id != target.pk else None
    if refusal is not None:
        raise refusal
    from runtime.models import Session, Turn

    with transaction.atomic():
        locked = {u.pk: u for u in EndUser.objects.select_for_update().filter(pk__in=[source.pk, target.pk]).order_by("pk")}
        source, target = locked[source.pk], locked[target.pk]
        if source.merged_into_id == target.pk:
            return target
        plan = merge_plan(source=source, target=target)
        claimant = plan.source_trust != TRUST_VERIFIED and plan.target_trust == TRUST_VERIFIED
        counts = {"identities": len(plan.moving), "identities_detached": len(plan.detached)}
        if plan.detached:
            holder = EndUser.objects.create(organization_id=source.organization_id,
                                            profile={"detached_by_merge": {"from": source.pk, "into": target.pk}})
            Identity.objects.filter(pk__in=[i.pk for i in plan.detached]).update(end_user=holder)
            counts["detached_to"] = holder.pk
        Identity.objects.filter(pk__in=[i.pk for i in plan.moving]).update(end_user=target)
        counts.update({
            "sessions": Session.objects.filter(end_user=source).update(end_user=target),
            "timeline_sessions": EndUserSession.objects.filter(end_user=source).update(end_user=target),
            "messages": EndUserMessage.objects.filter(end_user=source).update(end_user=target),
        })
        Turn.objects.filter(author=source).update(author=target)
        memory_ids = list(Memory.objects.filter(end_user=source).values_list("pk", flat=True))
        Memory.objects.filter(pk__in=memory_ids).update(end_user=target)
        MemoryEvent.objects.bulk_create(
            MemoryEvent(memory_id=pk, action=MemoryEvent.Action.MERGE, actor=actor or "merge",
                        new_text=f"end user {source.pk} -> {target.pk}") for pk in memory_ids
        )
        counts["memories"] = len(memory_ids)
        if claimant:
            # What an unverified person said about name, email or phone stays a claim: it never
            # becomes the verified person's profile (nor greets them by the claimant's name).
            claimed = Memory.objects.filter(pk__in=memory_ids, key__in=list(PROFILE_KEYS), deleted_at__isnull=True,
                                            superseded_by__isnull=True)
            for memory in claimed:
                MemoryEvent.objects.create(memory=memory, action=MemoryEvent.Action.DELETE, old_text=memory.text,
                                           actor=actor or "merge")
            claimed.update(deleted_at=timezone.now())
        # Two active profile memories for the same attribute: the target's wins, the source's is superseded.
        for key in PROFILE_KEYS:
            active = list(Memory.objects.filter(end_user=target, key=key, superseded_by__isnull=True,
                                                deleted_at__isnull=True).order_by("pk"))
            keep = next((m for m in active if m.pk not in memory_ids), active[-1] if active else None)
            for extra in active:
                if extra.pk != keep.pk:
                    Memory.objects.filter(pk=extra.pk).update(superseded_by=keep)
        claims = {**source.profile.get("claims", {}), **target.profile.get("claims", {})}
        if claimant:
            claims = {**{k: v for k, v in source.profile.items() if k in PROFILE_KEYS and isinstance(v, str)},
                      **claims}
            profile = dict(target.profile)
        else:
            profile = {**source.profile, **target.profile}
            target.display_name = target.display_name or source.display_name
        profile["claims"] = claims
        if not profile["claims"]:
            profile.pop("claims")
        target.profile = profile
        target.last_seen_at = max(target.last_seen_at, source.last_seen_at)
        target.save(update_fields=["profile", "display_name", "last_seen_at"])
        EndUser.objects.filter(merged_into=source).update(merged_into=target)
        source.merged_into, source.merged_at = target, timezone.now()
        source.save(update_fields=["merged_into", "merged_at"])
        MergeRecord.objects.create(organization_id=target.organization_id, source=source, target=target, actor=actor,
                                   counts=counts)
    logger.info("end user %s merged into %s by %s: %s", source.pk, target.pk, actor or "?", counts)
    return target


# --- privacy -----------------------------------------------------------------------------

def end_user_erase(*, end_user: EndUser, actor: str) -> ErasureRecord:
    """Erase a person: identities, memories and message texts go; anonymous counts and an audit stay."""
    from runtime.models import Session, Turn

    with transaction.atomic():
        end_user = EndUser.objects.select_for_update().get(pk=selectors.end_user_canonical(end_user).pk)
        people = [end_user.pk, *EndUser.objects.filter(merged_into=end_user).values_list("pk", flat=True)]
        turn_ids = EndUserMessage.objects.filter(end_user_id__in=people).values("turn_id")
        counts = {
            "sessions": EndUserSession.objects.filter(end_user_id__in=people).count(),
            "messages": Turn.objects.filter(pk__in=turn_ids).update(user_text="", reply_text="", payload={}, error=""),
            "identities": Identity.objects.filter(end_user_id__in=people).delete()[1].get("endusers.Identity", 0),
            "memories": Memory.objects.filter(end_user_id__in=people).count(),
        }
        Turn.objects.filter(author_id__in=people).exclude(user_text="").update(user_text="", reply_text="", payload={})
        Memory.objects.filter(end_user_id__in=people).delete()
        Session.objects.filter(end_user_id__in=people).update(metadata={"erased": True})
        EndUser.objects.filter(pk__in=people).update(display_name="", profile={})
        EndUser.objects.filter(pk=end_user.pk).update(erased_at=timezone.now())
        record = ErasureRecord.objects.create(organization_id=end_user.organization_id, end_user_id_erased=end_user.pk,
                                              actor=actor, counts=counts)
    logger.info("end user %s erased by %s: %s", end_user.pk, actor, counts)
    return record


def turns_purge_expired(*, days: int, batch_size: int = 2000, now=None, progress=None) -> dict:
    """Delete turns older than `days` days (their timeline rows go with them), then empty sessions."""
    from runtime.models import Session, Turn

    if days <= 0:
        return {"turns": 0, "sessions": 0}
    cutoff = (now or timezone.now()) - timezone.timedelta(days=days)
    deleted_turns = 0
    touched_sessions: set = set()
    while True:
        rows = list(Turn.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", "session_id")[:batch_size])
        if not rows:
            break
        ids = [pk for pk, _ in rows]
        touched_sessions.update(sid for _, sid in rows)
        with transaction.atomic():
            EndUserMessage.objects.filter(turn_id__in=ids).delete()
            deleted_turns += Turn.objects.filter(pk__in=ids).delete()[1].get("runtime.Turn", 0)
        if progress:
            progress(len(ids))
    deleted_sessions = Session.objects.filter(
        last_activity_at__lt=cutoff, turns__isnull=True
    ).delete()[1].get("runtime.Session", 0)
    # Keep the timeline's counts true for sessions that lost old turns but continue.
    touched = list(touched_sessions)
    for start in range(0, len(touched), 1000):
        for entry in EndUserSession.objects.filter(session_id__in=touched[start : start + 1000]):
            remaining = EndUserMessage.objects.filter(session_id=entry.session_id)
            first = remaining.order_by("created_at").values_list("created_at", flat=True).first()
            EndUserSession.objects.filter(pk=entry.pk).update(
                message_count=remaining.count(), first_seen_at=first or entry.first_seen_at
            )
    return {"turns": deleted_turns, "sessions": deleted_sessions}
