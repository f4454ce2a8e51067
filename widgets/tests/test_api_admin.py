# ruff: noqa: F811  (fixtures imported from support_api)
"""The widget admin: create with domain validation, stats chart, key/secret rotation, organization scoping."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from runtime.models import Agent, Membership
from widgets.models import ChatWidget
from widgets.services import stat_increment
from widgets.tests.support_api import init_ok, other_widget, widget  # noqa: F401


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def _form(organization, agent, **overrides):
    data = {
        "organization": organization.pk, "name": "Help center", "agent": agent.pk, "locale": "ko", "is_active": "on",
        "allowed_domains_text": "help.example.com\n*.example.org", "allowed_paths_text": "/help",
        "theme_color": "#112233", "theme_icon": "chat", "theme_position": "bottom-left",
        "theme_launcher_title": "문의하기", "theme_greeting": "무엇을 도와드릴까요?", "theme_welcome_message": "안녕하세요",
        "theme_mobile_allowed": "on",
    }
    data.update(overrides)
    return data


def test_create_widget_in_admin(superuser_client, organization, agent):
    response = superuser_client.post(reverse("admin:widgets_chatwidget_add"), _form(organization, agent))
    assert response.status_code == 302, response.content.decode()[:2000]
    widget = ChatWidget.objects.get(name="Help center")
    assert widget.public_key.startswith("mw_pk_") and widget.identity_secret.startswith("mw_is_")
    assert widget.allowed_domains == ["help.example.com", "*.example.org"] and widget.allowed_paths == ["/help"]
    assert widget.theme_resolved["position"] == "bottom-left" and widget.theme["color"] == "#112233"


@pytest.mark.parametrize(("field", "value"), [("allowed_domains_text", "*.com"), ("allowed_domains_text", "a b"),
                                              ("allowed_paths_text", "help"), ("theme_color", "red")])
def test_invalid_settings_are_refused(superuser_client, organization, agent, field, value):
    response = superuser_client.post(reverse("admin:widgets_chatwidget_add"), _form(organization, agent, **{field: value}))
    assert response.status_code == 200 and not ChatWidget.objects.exists()
    assert "errorlist" in response.content.decode()


def test_agent_of_another_organization_is_refused(superuser_client, organization, other_organization):
    foreign = Agent.objects.create(organization=other_organization, name="theirs")
    response = superuser_client.post(reverse("admin:widgets_chatwidget_add"), _form(organization, foreign))
    assert response.status_code == 200 and not ChatWidget.objects.exists()


def test_change_page_shows_install_status_and_stats_chart(superuser_client, client, widget):
    init_ok(client, widget)
    stat_increment(widget_id=widget.pk, opens=3, conversations=2, messages=5)
    page = superuser_client.get(reverse("admin:widgets_chatwidget_change", args=[widget.pk])).content.decode()
    assert "https://shop.example.com" in page and "설치됨" in page
    assert page.count('<svg class="mw-chart"') == 5 and "<title>" in page
    assert widget.public_key in page and "rotate-key" in page
    listing = superuser_client.get(reverse("admin:widgets_chatwidget_changelist")).content.decode()
    assert "mw-badge-ok" in listing


def test_rotate_key_and_secret(superuser_client, widget):
    old_key, old_secret = widget.public_key, widget.identity_secret
    url = reverse("admin:widgets_chatwidget_rotate_key", args=[widget.pk])
    assert superuser_client.get(url).status_code == 405
    assert superuser_client.post(url).status_code == 302
    widget.refresh_from_db()
    assert widget.public_key != old_key and widget.key_rotated_at and widget.identity_secret == old_secret
    superuser_client.post(reverse("admin:widgets_chatwidget_rotate_secret", args=[widget.pk]))
    widget.refresh_from_db()
    assert widget.identity_secret != old_secret


def test_bulk_rotate_action(superuser_client, widget, other_widget):
    keys = {widget.public_key, other_widget.public_key}
    response = superuser_client.post(reverse("admin:widgets_chatwidget_changelist"), {
        "action": "rotate_public_keys", "_selected_action": [widget.pk, other_widget.pk]})
    assert response.status_code == 302
    assert not keys & set(ChatWidget.objects.values_list("public_key", flat=True))


def test_staff_see_only_their_organization(client, django_user_model, widget, other_organization):
    foreign_agent = Agent.objects.create(organization=other_organization, name="x")
    foreign = ChatWidget.objects.create(organization=other_organization, agent=foreign_agent, name="Theirs")
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="widgets"))
    Membership.objects.create(user=staff, organization=widget.organization)
    client.force_login(staff)
    listing = client.get(reverse("admin:widgets_chatwidget_changelist")).content.decode()
    assert widget.name in listing and "Theirs" not in listing
    assert client.get(reverse("admin:widgets_chatwidget_change", args=[foreign.pk])).status_code == 302
    old = foreign.public_key
    assert client.post(reverse("admin:widgets_chatwidget_rotate_key", args=[foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.public_key == old
