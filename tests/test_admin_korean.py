"""Korean first, everywhere an operator looks; English through the language setting (issue 11, 1)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import translation

from mejai.labels import label_texts
from runtime.models import Membership

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Names that read the same in both languages.
SAME_IN_KOREAN = {"ID", "id", "API", "Mattermost", "—", "English", "slug"}


def test_every_console_label_has_korean():
    missing = []
    with translation.override("ko"):
        for text in label_texts():
            if text in SAME_IN_KOREAN or HANGUL.search(text):
                continue
            if not HANGUL.search(translation.gettext(text)):
                missing.append(text)
    assert missing == []


def test_labels_do_not_leak_into_migrations(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on changes
    assert "No changes detected" in out.getvalue()


def test_the_compiled_catalog_matches_its_source():
    po = settings.BASE_DIR / "locale/ko/LC_MESSAGES/django.po"
    mo = settings.BASE_DIR / "locale/ko/LC_MESSAGES/django.mo"
    assert mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime - 1


@pytest.mark.parametrize("url", ["/admin/", "/admin/runtime/agent/", "/admin/endusers/memory/",
                                 "/admin/runtime/conversation/", "/admin/widgets/widgetdailystat/"])
def test_admin_speaks_korean_by_default_and_english_on_request(admin_client, organization, url):
    korean = admin_client.get(url).content.decode()
    assert HANGUL.search(korean)
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = admin_client.get(url).content.decode()
    assert english != korean


def test_index_and_changelist_headings(admin_client, organization):
    page = admin_client.get("/admin/").content.decode()
    for text in ("에이전트", "대화", "고객", "카카오 봇", "채팅 위젯"):
        assert text in page, text
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = admin_client.get("/admin/").content.decode()
    for text in ("Agents", "Conversations", "End users", "Kakao bots", "Chat widgets"):
        assert text in page, text


def test_view_only_list_heading_is_not_garbled(client, organization):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_widgetdailystat"))
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    page = client.get("/admin/widgets/widgetdailystat/").content.decode()
    assert "위젯 일별 통계 보기" in page and "보기위한" not in page and "를(을)" not in page


def test_the_language_switch_sets_english(admin_client):
    response = admin_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert response.status_code == 302
    assert "Agents" in admin_client.get("/admin/").content.decode()
