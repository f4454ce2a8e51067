"""Every admin surface as a staff member of org A against org B's rows: nothing of B is seen or touched.

The test walks `admin.site._registry`, so a ModelAdmin added later is driven too (and must use
`runtime.admin_scoping`): changelists (rows, filters), change/history/delete pages, add forms
(foreign-key choices), every action, autocomplete, and targeted saves that name B's rows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone

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
from kakao.models import CallbackTask, KakaoBot, KakaoEvent, KakaoUser
from runtime.admin_scoping import (
    OrganizationScopedAdmin,
    OrganizationScopedForm,
    OrganizationScopedMixin,
    SuperuserOnlyMixin,
    organization_path,
)
from runtime.auth import api_key_issue
from runtime.models import (
    Agent,
    ApiKey,
    Membership,
    Organization,
    PromptAudit,
    PromptTemplate,
    PromptVersion,
    Session,
    Turn,
)
from widgets.models import ChatWidget, WidgetDailyStat, WidgetEvent

MARK_B = "GLOBEX-ONLY"


def tenant_rows(organization: Organization, tag: str, user) -> dict[type, object]:
    """One row of every model that has an admin (or an inline), all in `organization`."""
    now = timezone.now()
    agent = Agent.objects.create(organization=organization, name=f"agent-{tag}")
    template = PromptTemplate.objects.create(organization=organization, name=f"prompt-{tag}")
    version = PromptVersion.objects.create(template=template, version=1, text=f"text {tag}", is_active=True)
    audit = PromptAudit.objects.create(template=template, version=version, action="create")
    api_key, _ = api_key_issue(organization=organization, name=f"key-{tag}")
    end_user = EndUser.objects.create(organization=organization, display_name=f"customer-{tag}")
    other_user = EndUser.objects.create(organization=organization, display_name=f"second-{tag}")
    identity = Identity.objects.create(organization=organization, end_user=end_user, kind="email",
                                       value=f"{tag.lower()}@example.com", verified=True)
    session = Session.objects.create(organization=organization, agent=agent, channel="api", end_user=end_user)
    turn = Turn.objects.create(session=session, seq=1, author=end_user, user_text=f"hello {tag}",
                               reply_text=f"reply {tag}", status="completed")
    memory = Memory.objects.create(organization=organization, end_user=end_user, text=f"memory {tag}")
    org_memory = Memory.objects.create(organization=organization, end_user=None, text=f"org memory {tag}")
    memory_event = MemoryEvent.objects.create(memory=memory, action="add", new_text=memory.text)
    eu_session = EndUserSession.objects.create(organization=organization, end_user=end_user, session=session,
                                               channel="api", first_seen_at=now, last_seen_at=now)
    eu_message = EndUserMessage.objects.create(organization=organization, end_user=end_user, session=session,
                                               turn=turn, channel="api", created_at=now)
    merge = MergeRecord.objects.create(organization=organization, source=other_user, target=end_user)
    erasure = ErasureRecord.objects.create(organization=organization, end_user_id_erased=999, actor="test")
    widget = ChatWidget.objects.create(organization=organization, agent=agent, name=f"widget-{tag}",
                                       allowed_domains=["example.com"])
    stat = WidgetDailyStat.objects.create(widget=widget, day=now.date(), loads=1)
    widget_event = WidgetEvent.objects.create(widget=widget, session=session, event_type="load")
    bot = KakaoBot.objects.create(organization=organization, agent=agent, name=f"bot-{tag}",
                                  bot_id=f"bot{tag}{uuid.uuid4().hex[:8]}", secret_header_value=f"secret-{tag}")
    kakao_user = KakaoUser.objects.create(bot=bot, user_key=f"user-{tag}", end_user=end_user, session=session)
    task = CallbackTask.objects.create(organization=organization, bot=bot, kakao_user=kakao_user, turn=turn,
                                       received_at=now, not_before=now, deadline=now + timedelta(seconds=55),
                                       status="failed", token_hash=uuid.uuid4().hex)
    kakao_event = KakaoEvent.objects.create(organization=organization, bot=bot, kakao_user=kakao_user,
                                            session=session, task=task, kind="callback_failed")
    membership = Membership.objects.create(user=user, organization=organization)
    return {
        Organization: organization, Membership: membership, Agent: agent, PromptTemplate: template,
        PromptVersion: version, PromptAudit: audit, ApiKey: api_key, Session: session, Turn: turn,
        EndUser: end_user, Identity: identity, Memory: memory, MemoryEvent: memory_event,
        EndUserSession: eu_session, EndUserMessage: eu_message, MergeRecord: merge, ErasureRecord: erasure,
        ChatWidget: widget, WidgetDailyStat: stat, WidgetEvent: widget_event, KakaoBot: bot, KakaoUser: kakao_user,
        CallbackTask: task, KakaoEvent: kakao_event, "org_memory": org_memory, "second_user": other_user,
    }


@pytest.fixture
def tenants(db, django_user_model):
    org_a = Organization.objects.create(slug="acme", name="Acme")
    org_b = Organization.objects.create(slug="globex", name=f"Globex {MARK_B}")
    staff_a = django_user_model.objects.create_user("staff-a", "a@example.com", "pw", is_staff=True)
    staff_b = django_user_model.objects.create_user("staff-b", "b@example.com", "pw", is_staff=True)
    # Org A's staff hold every permission Django has: scoping must not rest on permissions.
    staff_a.user_permissions.set(Permission.objects.all())
    return {"a": tenant_rows(org_a, "A", staff_a), "b": tenant_rows(org_b, f"B{MARK_B}", staff_b),
            "staff_a": staff_a, "staff_b": staff_b}


@pytest.fixture
def staff_a_client(client, tenants):
    client.force_login(tenants["staff_a"])
    return client


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _registered():
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()]


def test_every_admin_is_organization_scoped():
    for model, model_admin in _registered():
        assert isinstance(model_admin, OrganizationScopedAdmin | SuperuserOnlyMixin), model
        if isinstance(model_admin, OrganizationScopedAdmin):
            assert organization_path(model) is not None, model
            assert issubclass(model_admin.form, OrganizationScopedForm), model
        for inline in model_admin.inlines:
            assert issubclass(inline, OrganizationScopedMixin), inline


def test_changelists_show_only_own_rows_and_filters(staff_a_client, tenants):
    for model, model_admin in _registered():
        response = staff_a_client.get(_url(model, "changelist"))
        if isinstance(model_admin, SuperuserOnlyMixin):
            assert response.status_code == 403, model
            continue
        assert response.status_code == 200, model
        shown = {row.pk for row in response.context["cl"].result_list}
        if model in tenants["b"]:
            assert tenants["b"][model].pk not in shown, model
        if model in tenants["a"]:
            assert tenants["a"][model].pk in shown, model
        assert MARK_B not in response.content.decode(), f"{model}: org B text in its changelist"


def test_change_history_delete_pages_of_other_organization_are_not_found(staff_a_client, tenants):
    for model, foreign in tenants["b"].items():
        if isinstance(model, str) or model not in admin.site._registry:
            continue
        for view in ("change", "history", "delete"):
            response = staff_a_client.get(_url(model, view, foreign.pk))
            # Django answers a row it cannot find with a redirect to the index (or 403 for superuser-only).
            assert response.status_code in (302, 403, 404), (model, view, response.status_code)
            assert MARK_B not in response.content.decode()
        before = model_to_dict(foreign)
        staff_a_client.post(_url(model, "delete", foreign.pk), {"post": "yes"})
        assert model.objects.filter(pk=foreign.pk).exists(), model
        foreign.refresh_from_db()
        assert model_to_dict(foreign) == before


def test_own_change_pages_open(staff_a_client, tenants):
    for model, own in tenants["a"].items():
        if isinstance(model, str) or model not in admin.site._registry:
            continue
        response = staff_a_client.get(_url(model, "change", own.pk))
        assert response.status_code == 200, model
        assert MARK_B not in response.content.decode(), f"{model}: org B text on org A's change page"


def test_add_forms_offer_only_own_rows(staff_a_client, tenants):
    for model, _model_admin in _registered():
        response = staff_a_client.get(_url(model, "add"))
        if response.status_code == 403:
            continue
        assert response.status_code == 200, model
        assert MARK_B not in response.content.decode(), f"{model}: org B offered on its add form"
        form = response.context["adminform"].form
        for name, field in form.fields.items():
            queryset = getattr(field, "queryset", None)
            if queryset is None:
                continue
            foreign = tenants["b"].get(queryset.model)
            if foreign is not None:
                assert not queryset.filter(pk=foreign.pk).exists(), (model, name)


def test_actions_never_reach_other_organization(staff_a_client, tenants):
    for model, model_admin in _registered():
        foreign = tenants["b"].get(model)
        if foreign is None:
            continue
        request = staff_a_client.get(_url(model, "changelist")).wsgi_request
        for name in model_admin.get_actions(request):
            before = model_to_dict(foreign)
            staff_a_client.post(_url(model, "changelist"),
                                {"action": name, "_selected_action": [str(foreign.pk)], "post": "yes",
                                 "select_across": "0", "index": "0"})
            assert model.objects.filter(pk=foreign.pk).exists(), (model, name)
            foreign.refresh_from_db()
            assert model_to_dict(foreign) == before, (model, name)


def test_api_key_for_another_organization_cannot_be_added(staff_a_client, tenants):
    org_a, org_b = tenants["a"][Organization], tenants["b"][Organization]
    response = staff_a_client.post(_url(ApiKey, "add"), {"organization": org_b.pk, "name": "stolen"})
    assert not ApiKey.objects.filter(organization=org_b, name="stolen").exists()
    # The organization is not a choice for staff: the key lands in their own organization.
    assert response.status_code == 302
    assert ApiKey.objects.get(name="stolen").organization == org_a


def test_api_key_organization_is_fixed_after_issue(client, tenants, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    key = tenants["a"][ApiKey]
    client.post(_url(ApiKey, "change", key.pk), {"organization": tenants["b"][Organization].pk, "name": "moved"})
    key.refresh_from_db()
    assert key.organization == tenants["a"][Organization]


def test_membership_cannot_be_moved_or_created_by_staff(staff_a_client, tenants):
    membership = tenants["a"][Membership]
    org_b = tenants["b"][Organization]
    response = staff_a_client.post(_url(Membership, "change", membership.pk),
                                   {"user": membership.user_id, "organization": org_b.pk})
    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.organization == tenants["a"][Organization]
    assert staff_a_client.get(_url(Membership, "add")).status_code == 403
    assert staff_a_client.post(_url(Organization, "add"), {"name": "Mine", "slug": "mine"}).status_code == 403
    assert not Organization.objects.filter(slug="mine").exists()


def test_users_and_groups_are_superuser_only(staff_a_client, tenants):
    staff = tenants["staff_a"]
    response = staff_a_client.post(_url(type(staff), "change", staff.pk),
                                   {"username": staff.username, "is_superuser": "on", "is_staff": "on"})
    assert response.status_code == 403
    staff.refresh_from_db()
    assert not staff.is_superuser
    assert staff_a_client.get(_url(Group, "changelist")).status_code == 403


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Agent, lambda a, b: {"organization": b[Organization].pk, "name": "x", "temperature": 0.2, "max_tokens": 10}),
        (Agent, lambda a, b: {"organization": a[Organization].pk, "name": "x", "temperature": 0.2, "max_tokens": 10,
                              "prompt": b[PromptTemplate].pk}),
        (PromptTemplate, lambda a, b: {"organization": b[Organization].pk, "name": "x",
                                       "versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 0,
                                       "audit-TOTAL_FORMS": 0, "audit-INITIAL_FORMS": 0}),
        (PromptVersion, lambda a, b: {"template": b[PromptTemplate].pk, "text": "x"}),
        (Memory, lambda a, b: {"organization": a[Organization].pk, "end_user": b[EndUser].pk, "text": "x",
                               "kind": "fact", "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0}),
        (KakaoBot, lambda a, b: {"organization": a[Organization].pk, "agent": b[Agent].pk, "name": "x",
                                 "bot_id": "x1", "secret_header_name": "X-S", "secret_header_value": "v",
                                 "waiting_text": "w", "welcome_text": "w", "allowed_callback_hosts": '["a.b"]',
                                 "session_timeout_minutes": 30}),
        (Session, lambda a, b: {"organization": a[Organization].pk, "agent": b[Agent].pk, "channel": "api",
                                "metadata": "{}", "status": "open", "end_user": b[EndUser].pk,
                                "turns-TOTAL_FORMS": 0, "turns-INITIAL_FORMS": 0}),
    ],
)
def test_saves_naming_other_organization_rows_are_refused(staff_a_client, tenants, model, data):
    count = model.objects.count()
    response = staff_a_client.post(_url(model, "add"), data(tenants["a"], tenants["b"]))
    assert response.status_code == 200, response.status_code  # the form again, with an error
    assert "errorlist" in response.content.decode() or "errornote" in response.content.decode()
    assert model.objects.count() == count


def test_superuser_cannot_link_rows_of_two_organizations(client, tenants, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    agent = tenants["a"][Agent]
    response = client.post(_url(Agent, "change", agent.pk),
                           {"organization": agent.organization_id, "name": agent.name, "temperature": 0.2,
                            "max_tokens": 10, "is_active": "on", "prompt": tenants["b"][PromptTemplate].pk})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    agent.refresh_from_db()
    assert agent.prompt is None


def test_superuser_sees_every_organization(client, tenants, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    response = client.get(_url(KakaoBot, "changelist"))
    shown = {row.pk for row in response.context["cl"].result_list}
    assert {tenants["a"][KakaoBot].pk, tenants["b"][KakaoBot].pk} <= shown


def test_autocomplete_answers_only_own_organization(staff_a_client, tenants):
    response = staff_a_client.get(reverse("admin:autocomplete"), {
        "app_label": "runtime", "model_name": "membership", "field_name": "organization", "term": ""})
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        ids = {int(item["id"]) for item in response.json()["results"]}
        assert tenants["b"][Organization].pk not in ids


def test_raw_id_label_does_not_reveal_other_organization(staff_a_client, tenants):
    # Turn.session is a raw-id field: an id of org B typed in must not come back with B's label.
    turn = tenants["a"][Turn]
    page = staff_a_client.get(_url(Turn, "change", turn.pk)).content.decode()
    assert MARK_B not in page
    page = staff_a_client.post(_url(Memory, "add"), {
        "organization": tenants["a"][Organization].pk, "end_user": tenants["b"][EndUser].pk, "text": "x",
        "kind": "fact", "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0}).content.decode()
    assert MARK_B not in page


def test_staff_without_membership_sees_nothing(client, tenants, django_user_model):
    lonely = django_user_model.objects.create_user("lonely", "l@example.com", "pw", is_staff=True)
    lonely.user_permissions.set(Permission.objects.all())
    client.force_login(lonely)
    response = client.get(_url(EndUser, "changelist"))
    assert response.status_code == 200 and not list(response.context["cl"].result_list)
    response = client.post(_url(ApiKey, "add"), {"name": "nowhere"})
    assert response.status_code == 403 and not ApiKey.objects.filter(name="nowhere").exists()
