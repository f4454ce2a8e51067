"""Identity normalization, resolution with trust levels, claims, names."""

from __future__ import annotations

import pytest

from endusers.models import EndUser, Identity, Memory
from endusers.normalize import identity_value_normalize
from endusers.rules import name_extract, name_valid
from endusers.services import end_user_merge, identity_claim, identity_resolve, profile_name_set
from mejai.errors import ApiError


def test_email_is_trimmed_lowercased_with_an_idna_domain():
    assert identity_value_normalize(kind="email", value="  MinSu@Example.COM ") == "minsu@example.com"
    assert identity_value_normalize(kind="email", value="a@bücher.de") == "a@xn--bcher-kva.de"


def test_phone_numbers_are_e164_with_korea_as_default_region():
    same = {identity_value_normalize(kind="phone", value=v) for v in ("010-1234-5678", "+82 10 1234 5678", "01012345678")}
    assert same == {"+821012345678"}


@pytest.mark.parametrize("kind,value", [("email", "not-an-email"), ("email", "a@"), ("email", "@b.com"),
                                        ("phone", "12"), ("phone", "전화번호"), ("phone", "010-12")])
def test_invalid_email_or_phone_names_the_field(kind, value):
    with pytest.raises(ApiError) as err:
        identity_value_normalize(kind=kind, value=value)
    assert err.value.status == 400 and err.value.field == kind and err.value.code == f"invalid_{kind}"


def test_other_kinds_are_exact_but_trimmed():
    assert identity_value_normalize(kind="kakao", value=" AbC ") == "AbC"
    with pytest.raises(ApiError):
        identity_value_normalize(kind="external_id", value="   ")


def test_verified_identity_links_to_the_same_end_user(organization):
    first = identity_resolve(organization=organization, kind="kakao", value="bot-user-1", verified=True)
    again = identity_resolve(organization=organization, kind="kakao", value="bot-user-1", verified=True)
    assert first.pk == again.pk
    phone_a = identity_resolve(organization=organization, kind="phone", value="010-1234-5678", verified=True)
    phone_b = identity_resolve(organization=organization, kind="phone", value="+82 10 1234 5678", verified=True)
    assert phone_a.pk == phone_b.pk
    assert Identity.objects.filter(kind="phone").count() == 1


def test_identities_are_unique_per_organization(organization, other_organization):
    ours = identity_resolve(organization=organization, kind="external_id", value="42", verified=True)
    theirs = identity_resolve(organization=other_organization, kind="external_id", value="42", verified=True)
    assert ours.pk != theirs.pk and theirs.organization_id == other_organization.pk


def test_visitor_ids_resolve_unverified_but_other_kinds_need_verification(organization):
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-1", verified=False)
    assert identity_resolve(organization=organization, kind="visitor", value="v-1", verified=False).pk == visitor.pk
    with pytest.raises(ValueError):
        identity_resolve(organization=organization, kind="email", value="a@b.com", verified=False)


def test_a_claim_never_attaches_to_another_persons_end_user(organization):
    owner = identity_resolve(organization=organization, kind="email", value="owner@example.com", verified=True)
    Memory.objects.create(organization=organization, end_user=owner, text="VIP 고객")
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-2", verified=False)

    assert identity_claim(end_user=visitor, kind="email", value="Owner@Example.com") is None
    visitor.refresh_from_db()
    assert visitor.profile["claims"] == {"email": "owner@example.com"}
    assert Identity.objects.get(value="owner@example.com").end_user_id == owner.pk
    # Resolving the visitor again still gives the visitor, not the owner.
    assert identity_resolve(organization=organization, kind="visitor", value="v-2", verified=False).pk == visitor.pk


def test_a_fresh_claim_is_stored_unverified_on_the_persons_own_end_user(organization):
    visitor = identity_resolve(organization=organization, kind="visitor", value="v-3", verified=False)
    identity = identity_claim(end_user=visitor, kind="phone", value="010 9999 8888")
    assert identity.end_user_id == visitor.pk and not identity.verified and identity.value == "+821099998888"
    assert Memory.objects.get(end_user=visitor, key="phone").text == "전화번호: +821099998888"
    with pytest.raises(ApiError) as err:
        identity_claim(end_user=visitor, kind="email", value="nope")
    assert err.value.field == "email"


def test_a_verified_identity_is_taken_from_a_claim_into_its_own_end_user(organization):
    """Someone claimed the address first; the real, verified owner must not land on the claimant's end user."""
    claimant = identity_resolve(organization=organization, kind="visitor", value="v-4", verified=False)
    identity_claim(end_user=claimant, kind="email", value="real@example.com")
    Memory.objects.create(organization=organization, end_user=claimant, text="claimant's secret")

    owner = identity_resolve(organization=organization, kind="email", value="real@example.com", verified=True)
    assert owner.pk != claimant.pk
    identity = Identity.objects.get(value="real@example.com")
    assert identity.end_user_id == owner.pk and identity.verified
    claimant.refresh_from_db()
    assert claimant.profile["claims"]["email"] == "real@example.com"
    assert not Memory.objects.filter(end_user=owner, text="claimant's secret").exists()


def test_resolve_follows_merges(organization):
    a = identity_resolve(organization=organization, kind="kakao", value="k-1", verified=True)
    b = identity_resolve(organization=organization, kind="external_id", value="e-1", verified=True)
    end_user_merge(source=a, target=b)
    assert identity_resolve(organization=organization, kind="kakao", value="k-1", verified=True).pk == b.pk


def test_profile_name_is_a_profile_memory_and_a_new_name_supersedes_it(organization):
    user = EndUser.objects.create(organization=organization)
    profile_name_set(end_user=user, name=" 민수 ")
    profile_name_set(end_user=user, name="민수")  # same name: nothing new
    profile_name_set(end_user=user, name="Minsu")
    user.refresh_from_db()
    assert user.display_name == "Minsu" and user.profile["name"] == "Minsu"
    names = Memory.objects.filter(end_user=user, key="name").order_by("pk")
    assert [m.text for m in names] == ["이름: 민수", "이름: Minsu"]
    assert names[0].superseded_by_id == names[1].pk and names[1].is_active
    with pytest.raises(ApiError) as err:
        profile_name_set(end_user=user, name="이름이 너무 길어서 스무 글자를 넘어가는 사람 이름")
    assert err.value.field == "name"


@pytest.mark.parametrize("text,name", [
    ("내 이름은 민수야", "민수"), ("난 영희야", "영희"), ("저는 철수라고 해요", "철수"), ("my name is Alex", "Alex"),
    ("제 이름은 김·민수입니다", "김·민수"), ("난 괜찮아", None), ("환불 규정 알려줘", None), ("my name is", None),
])
def test_name_extract(text, name):
    assert name_extract(text) == name


def test_name_valid_limits():
    assert name_valid("a" * 20) and not name_valid("a" * 21) and not name_valid("") and not name_valid("민수!")
