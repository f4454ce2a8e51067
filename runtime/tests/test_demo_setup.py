"""`manage.py demo_setup` (what `make run` prints each time): the second run's banner shows the demo data as it
is then — a login, API key, widget and customer that work — not values saved at the first run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from runtime.auth import api_key_principal
from runtime.models import ApiKey, Organization

pytestmark = pytest.mark.django_db


def banner(settings, tmp_path) -> str:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


def line(text: str, label: str) -> str:
    return next(row for row in text.splitlines() if row.strip().startswith(label))


def test_the_second_banner_shows_the_current_demo_data(settings, tmp_path):
    from endusers.models import Identity
    from widgets.models import ChatWidget
    from widgets.services import widget_public_key_rotate

    first = banner(settings, tmp_path)
    password = (tmp_path / "admin_password").read_text().strip()
    assert f"login admin / {password}" in first
    assert banner(settings, tmp_path) == first  # nothing changed: the same banner

    # Meanwhile the operator changes things in admin.
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("my-own-password-1")
    admin.save()
    org = Organization.objects.get(slug="demo")
    first_key = line(first, "API key:").split()[-1]
    ApiKey.objects.filter(organization=org).update(revoked_at="2026-01-01T00:00:00Z")
    widget = ChatWidget.objects.get(organization=org)
    widget.allowed_domains = ["shop.example.com"]
    widget.save()
    widget_public_key_rotate(widget=widget)
    person = Identity.objects.get(kind="external_id", value="demo-customer-1").end_user
    person.profile = {**person.profile, "name": "김민수"}
    person.save()

    second = banner(settings, tmp_path)
    assert password not in second and "changed since the first run" in line(second, "admin:")
    new_key = line(second, "API key:").split()[-1]
    assert new_key != first_key and api_key_principal(new_key).organization == org  # a key that works
    assert first_key not in second
    widget.refresh_from_db()
    assert f"{widget.public_key}  (allowed on shop.example.com)" in line(second, "widget:")
    assert f'data-key="{widget.public_key}"' in line(second, "snippet:")
    assert "김민수" in line(second, "customer:")


def test_the_banner_follows_the_public_base_url(settings, tmp_path):
    settings.PUBLIC_BASE_URL = "http://localhost:8001"
    text = banner(settings, tmp_path)
    assert "http://localhost:8001/admin/" in text and "http://localhost:8001/widget.js" in text
    assert "localhost:8000" not in text


def test_the_banner_offers_no_kakao_try_for_a_deactivated_demo_bot(settings, tmp_path):
    from kakao.models import KakaoBot

    assert "/kakao/skill -H" in banner(settings, tmp_path)
    KakaoBot.objects.update(is_active=False)  # the operator turned it off in admin
    text = banner(settings, tmp_path)
    assert "/kakao/skill -H" not in text and "deactivated" in line(text, "Kakao:")
    assert not KakaoBot.objects.filter(is_active=True).exists()  # the banner reports, it does not undo


def test_what_was_forgotten_stays_forgotten_on_the_next_run(settings, tmp_path):
    """/forget (or an operator's delete) of the demo customer's name and memories is not undone by make run."""
    from endusers.models import Identity, Memory
    from endusers.services import memory_delete

    banner(settings, tmp_path)
    person = Identity.objects.get(kind="external_id", value="demo-customer-1").end_user
    for memory in Memory.objects.filter(end_user=person, deleted_at__isnull=True):
        memory_delete(memory=memory, actor="test")
    person.refresh_from_db()
    person.profile = {k: v for k, v in person.profile.items() if k != "name"}
    person.save()
    text = banner(settings, tmp_path)
    assert "with 0 memories" in line(text, "customer:") and "민수" not in line(text, "customer:")
    assert not Memory.objects.filter(end_user=person, deleted_at__isnull=True).exists()
