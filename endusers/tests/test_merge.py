"""end_user_merge, its command and admin action, and duplicate discovery."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from endusers.models import EndUser, EndUserMessage, EndUserSession, Identity, Memory, MemoryEvent, MergeRecord
from endusers.services import end_user_merge, identity_claim, identity_resolve, memory_add, profile_name_set
from mejai.errors import ApiError
from runtime.models import Session, Turn
from runtime.services import turn_run


@pytest.fixture
def two_people(organization, agent, offline_llm, django_capture_on_commit_callbacks):
    kakao = identity_resolve(organization=organization, kind="kakao", value="kakao-1", verified=True)
    web = identity_resolve(organization=organization, kind="external_id", value="web-1", verified=True)
    for person, channel in ((kakao, "kakao"), (web, "api")):
        with django_capture_on_commit_callbacks(execute=True):
            turn_run(organization=organization, agent=agent, channel=channel, text="안녕하세요", end_user=person)
        memory_add(end_user=person, text=f"{channel}에서 남긴 기억")
    profile_name_set(end_user=kakao, name="민수")
    return kakao, web


def test_merge_moves_everything_and_is_idempotent(two_people):
    source, target = two_people
    kept = end_user_merge(source=source, target=target, actor="test")
    assert kept.pk == target.pk
    source.refresh_from_db()
    assert source.merged_into_id == target.pk and source.merged_at
    assert set(Identity.objects.filter(end_user=target).values_list("kind", flat=True)) == {"kakao", "external_id"}
    assert Session.objects.filter(end_user=target).count() == 2
    assert Turn.objects.filter(author=target).count() == 2
    assert EndUserSession.objects.filter(end_user=target).count() == 2
    assert EndUserMessage.objects.filter(end_user=target).count() == 2
    assert Memory.objects.filter(end_user=target, deleted_at__isnull=True, superseded_by__isnull=True).count() == 3
    assert MemoryEvent.objects.filter(action="merge").count() == 2  # the kakao fact and the name
    target.refresh_from_db()
    assert target.profile["name"] == "민수" and target.display_name == "민수"
    assert not EndUser.objects.get(pk=source.pk).identities.exists()

    assert end_user_merge(source=source, target=target).pk == target.pk  # again: nothing happens
    assert MergeRecord.objects.count() == 1


def test_merge_keeps_one_profile_memory_per_attribute(organization):
    a = EndUser.objects.create(organization=organization)
    b = EndUser.objects.create(organization=organization)
    profile_name_set(end_user=a, name="민수")
    profile_name_set(end_user=b, name="Minsu")
    end_user_merge(source=a, target=b)
    active = Memory.objects.filter(end_user=b, key="name", superseded_by__isnull=True, deleted_at__isnull=True)
    assert [m.text for m in active] == ["이름: Minsu"]


def test_merge_bad_inputs_change_nothing(organization, other_organization):
    a = EndUser.objects.create(organization=organization)
    b = EndUser.objects.create(organization=organization)
    c = EndUser.objects.create(organization=organization)
    foreign = EndUser.objects.create(organization=other_organization)
    end_user_merge(source=b, target=c)
    for source, target, code in [(a, a, "merge_same"), (a, b, "merge_into_merged"), (a, foreign, "merge_cross_organization"),
                                 (b, a, "merge_source_merged")]:
        with pytest.raises(ApiError) as err:
            end_user_merge(source=source, target=target)
        assert err.value.status == 400 and err.value.code == code
    a.refresh_from_db()
    assert a.merged_into_id is None


def test_merge_command(two_people, capsys):
    source, target = two_people
    call_command("merge_end_users", str(source.pk), str(target.pk))
    out = capsys.readouterr().out
    assert f"INTO {target.pk} (verified)" in out and "nothing merged" in out
    call_command("merge_end_users", str(source.pk), str(target.pk), "--yes")
    assert f"merged into {target.pk}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="merge_same"):
        call_command("merge_end_users", str(target.pk), str(target.pk))
    with pytest.raises(CommandError, match="No end user"):
        call_command("merge_end_users", "999999", str(target.pk))


def test_find_duplicates_lists_claims_of_verified_identities(organization, capsys):
    owner = identity_resolve(organization=organization, kind="email", value="owner@example.com", verified=True)
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-1", verified=False)
    identity_claim(end_user=visitor, kind="email", value="OWNER@example.com")
    lonely = identity_resolve(organization=organization, kind="visitor", value="v-2", verified=False)
    identity_claim(end_user=lonely, kind="email", value="lonely@example.com")
    call_command("find_duplicate_end_users")
    out = capsys.readouterr().out
    assert f"{visitor.pk} -> {owner.pk}  same email o***@example.com  [unverified claim]" in out
    assert "0 merge proposal(s), 1 unverified claim(s)" in out
    assert "owner@example.com" not in out  # masked unless asked


def test_admin_merge_action(admin_client, organization, two_people):
    source, target = two_people
    response = admin_client.post("/admin/endusers/enduser/", {
        "action": "merge_selected", "_selected_action": [source.pk, target.pk], "post": "yes"}, follow=True)
    assert response.status_code == 200
    target.refresh_from_db()
    assert target.merged_into_id == source.pk  # the oldest keeps everything
