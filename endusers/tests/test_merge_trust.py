# ruff: noqa: F811  (fixtures imported from widgets.tests.support_api)
"""The merge trust rule: an anonymous visitor who claims a verified customer's email never gets their data.

The attack of issue 10 (High 2), through every entry point: the visitor claims the email, the
claim is offered to the operator, the operator merges — and the visitor's device must still reach
nothing of the customer (memories, name, /forget, /remember).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from endusers.models import EndUser, Identity, Memory
from endusers.selectors import duplicate_candidates, end_user_canonical
from endusers.services import contact_upsert, end_user_merge, memory_add, merge_plan
from endusers.tests.conftest import assert_error
from mejai.errors import ApiError
from runtime.models import Membership
from widgets.tests.support_api import chat, init_ok, widget  # noqa: F401

VISITOR = {"id": "visitor-claimant-0001", "email": "MINSU@example.com", "name": "해커"}
SECRET = "계좌번호는 110-222-333333"


@pytest.fixture
def customer(organization):
    person, _ = contact_upsert(organization=organization, email="minsu@example.com", display_name="민수")
    memory_add(end_user=person, text=SECRET)
    return person


@pytest.fixture
def claimant(client, widget, customer, offline_llm):
    init_ok(client, widget, visitor=VISITOR)
    identity = Identity.objects.get(kind="visitor", value=VISITOR["id"])
    return identity.end_user


def _visitor_reach(client, widget) -> tuple[EndUser, str]:
    """Who the visitor's device is now, and what `/memory` answers it."""
    started = init_ok(client, widget, visitor={"id": VISITOR["id"]})
    reply = chat(client, started["widget_token"], "/memory")
    assert reply.status_code == 200, reply.content
    resolved = end_user_canonical(Identity.objects.get(kind="visitor", value=VISITOR["id"]).end_user)
    return resolved, reply.json()["message"]


def _assert_customer_safe(client, widget, customer):
    resolved, answer = _visitor_reach(client, widget)
    assert resolved.pk != customer.pk
    assert "110-222" not in answer and "계좌" not in answer
    customer.refresh_from_db()
    assert customer.display_name == "민수"  # never renamed by the claimant's "해커"
    assert customer.profile.get("name") != "해커"
    assert Memory.objects.filter(end_user=customer, text=SECRET, deleted_at__isnull=True).exists()
    # The visitor's /forget and /remember land on their own record, not the customer's.
    started = init_ok(client, widget, visitor={"id": VISITOR["id"]})
    chat(client, started["widget_token"], "/remember 배송지는 해커의 집")
    assert not Memory.objects.filter(end_user=customer, text__contains="해커의 집").exists()


def test_claim_alone_reaches_nothing(client, widget, customer, claimant):
    assert claimant.pk != customer.pk
    assert claimant.profile["claims"]["email"] == "minsu@example.com"
    _assert_customer_safe(client, widget, customer)


def test_claims_are_marked_unproven_not_proposed(customer, claimant, capsys):
    found = duplicate_candidates()
    assert [(c.source.pk, c.target.pk, c.proven) for c in found] == [(claimant.pk, customer.pk, False)]
    call_command("find_duplicate_end_users")
    out = capsys.readouterr().out
    assert "0 merge proposal(s), 1 unverified claim(s)" in out and "[unverified claim]" in out
    assert "merge_end_users" not in out  # no ready-made command for an unproven match


def test_plan_shows_direction_and_risk(customer, claimant):
    plan = merge_plan(source=claimant, target=customer).as_dict()
    assert plan["source"] == {"id": claimant.pk, "trust": "unverified"}
    assert plan["target"] == {"id": customer.pk, "trust": "verified"}
    assert [i["kind"] for i in plan["identities_detached"]] == ["visitor"]
    assert plan["identities_moving"] == []
    assert any("증거" in w and "proof" in w for w in plan["warnings"])


def _merge_service(claimant, customer, **_):
    end_user_merge(source=claimant, target=customer, actor="test")


def _merge_command(claimant, customer, **_):
    call_command("merge_end_users", str(claimant.pk), str(customer.pk))  # prints the plan only
    assert EndUser.objects.get(pk=claimant.pk).merged_into_id is None
    call_command("merge_end_users", str(claimant.pk), str(customer.pk), "--yes")


def _merge_api(claimant, customer, *, api_client, api_key, **_):
    url = f"/api/contacts/{claimant.pk}/merge"
    preview = api_client.post(url, {"into": customer.pk, "dry_run": True}, format="json",
                              HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert preview.status_code == 200 and preview.json()["merge"]["identities_detached"][0]["kind"] == "visitor"
    assert EndUser.objects.get(pk=claimant.pk).merged_into_id is None
    response = api_client.post(url, {"into": customer.pk}, format="json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200, response.content
    assert response.json()["merge"]["warnings"]


def _merge_admin(claimant, customer, *, staff_client, **_):
    url = "/admin/endusers/enduser/"
    page = staff_client.post(url, {"action": "merge_selected", "_selected_action": [claimant.pk, customer.pk]})
    html = page.content.decode()
    assert page.status_code == 200 and "Confirm the merge" in html and "proof" in html
    assert f"#{claimant.pk} (확인되지 않음 · unverified)" in html  # the direction: claimant INTO the customer
    assert EndUser.objects.get(pk=claimant.pk).merged_into_id is None  # nothing until confirmed
    staff_client.post(url, {"action": "merge_selected", "_selected_action": [claimant.pk, customer.pk], "post": "yes"})


@pytest.fixture
def staff_client(organization, django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="endusers"))
    Membership.objects.create(user=user, organization=organization)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("merge", [_merge_service, _merge_command, _merge_api, _merge_admin],
                         ids=["service", "command", "api", "admin"])
def test_merging_the_claimant_into_the_customer_hands_them_nothing(
    client, widget, customer, claimant, merge, api_key, staff_client
):
    from rest_framework.test import APIClient

    merge(claimant, customer, api_client=APIClient(), api_key=api_key, staff_client=staff_client)
    claimant.refresh_from_db()
    assert claimant.merged_into_id == customer.pk
    # The visitor key now belongs to a new anonymous end user, not the customer.
    holder = Identity.objects.get(kind="visitor", value=VISITOR["id"]).end_user
    assert holder.pk not in (customer.pk, claimant.pk) and holder.merged_into_id is None
    assert not Identity.objects.filter(end_user=customer, kind="visitor").exists()
    _assert_customer_safe(client, widget, customer)


def test_verified_person_is_never_merged_into_an_unverified_one(customer, claimant, api_key):
    from rest_framework.test import APIClient

    with pytest.raises(ApiError) as err:
        end_user_merge(source=customer, target=claimant)
    assert err.value.status == 409 and err.value.code == "merge_into_unverified"
    response = APIClient().post(f"/api/contacts/{customer.pk}/merge", {"into": claimant.pk}, format="json",
                                HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert_error(response, 409, "merge_into_unverified")
    customer.refresh_from_db()
    assert customer.merged_into_id is None


def test_admin_keeps_the_verified_person_whatever_the_age(customer, claimant, staff_client):
    # The claimant's record is newer here; make it the oldest so "oldest wins" would pick it.
    EndUser.objects.filter(pk=claimant.pk).update(created_at=customer.created_at.replace(year=2000))
    staff_client.post("/admin/endusers/enduser/", {
        "action": "merge_selected", "_selected_action": [claimant.pk, customer.pk], "post": "yes"})
    customer.refresh_from_db()
    claimant.refresh_from_db()
    assert customer.merged_into_id is None and claimant.merged_into_id == customer.pk


def test_merge_api_hides_other_organizations_contacts(customer, other_organization, api_key):
    from rest_framework.test import APIClient

    foreign = EndUser.objects.create(organization=other_organization)
    response = APIClient().post(f"/api/contacts/{customer.pk}/merge", {"into": foreign.pk}, format="json",
                                HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert_error(response, 404, "contact_not_found")
