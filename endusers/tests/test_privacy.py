"""PII masking in logs and admin lists, retention purge, erasure command."""

from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from endusers.logging import PiiMaskingFilter
from endusers.models import EndUserMessage, EndUserSession, ErasureRecord, Identity, Memory
from endusers.privacy import mask_identity, mask_text
from endusers.services import identity_claim, identity_resolve, memory_add, turns_purge_expired
from runtime.models import Session, Turn
from runtime.services import turn_run


@pytest.mark.parametrize("raw,masked", [
    ("mail Min.Su@example.com now", "mail M***@example.com now"),
    ("전화 010-1234-5678로 주세요", "전화 [phone ***78]로 주세요"),
    ("call +82 10 1234 5678", "call [phone ***78]"),
    ("card 4111 1111 1111 1111 ok", "card [card ****1111] ok"),
    ("card 4111-1111-1111-1111", "card [card ****1111]"),
    ("session 123e4567-e89b-12d3-a456-426614174000 on 2026-11-22, 1,000원", None),
    # Issue 10: non-ASCII addresses and the hyphens people paste (U+2010, en dash, minus, fullwidth).
    ("메일 müller@exämple.de 로", "메일 m***@exämple.de 로"),
    ("메일 민수@예시.한국 입니다", "메일 민***@예시.한국 입니다"),
    ("전화 010\u20101234\u20105678", "전화 [phone ***78]"),
    ("전화 010\u20131234\u20135678", "전화 [phone ***78]"),
    ("전화 010\uff0d1234\uff0d5678", "전화 [phone ***78]"),
    ("card 4111\u22121111\u22121111\u22121111", "card [card ****1111]"),
    # Long runs that made the old email pattern scan once per position: still correct.
    ("a" * 5000 + " x@example.com", "a" * 5000 + " x***@example.com"),
    ("1" * 3000, None),
])
def test_mask_text(raw, masked):
    assert mask_text(raw) == (masked or raw)


def test_logging_filter_masks_message_args_and_tracebacks(caplog):
    logger = logging.getLogger("endusers.test.masking")
    handler = logging.Handler()
    records = []
    handler.emit = records.append
    handler.addFilter(PiiMaskingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("user %s called from %s", "lee@example.com", "010-9999-8888")
        try:
            raise ValueError("bad card 5500 0000 0000 0004")
        except ValueError:
            logger.exception("failed for kim@example.org")
    finally:
        logger.removeHandler(handler)
    assert records[0].getMessage() == "user l***@example.com called from [phone ***88]"
    assert records[1].getMessage() == "failed for k***@example.org"
    assert "5500" not in records[1].exc_text and "[card ****0004]" in records[1].exc_text


def test_logging_filter_is_installed_on_the_console_handler(settings):
    handler = settings.LOGGING["handlers"]["console"]
    assert "pii" in handler.get("filters", [])
    assert settings.LOGGING["filters"]["pii"]["()"] == "endusers.logging.PiiMaskingFilter"


def test_mask_identity():
    assert mask_identity(kind="email", value="minsu@example.com") == "m***@example.com"
    assert mask_identity(kind="phone", value="+821012345678") == "+82******5678"
    assert "cust-12345" not in mask_identity(kind="external_id", value="cust-12345")


def test_admin_list_views_show_masked_values(admin_client, organization):
    person = identity_resolve(organization=organization, kind="email", value="secret.person@example.com", verified=True)
    identity_claim(end_user=person, kind="phone", value="010-4444-5555")
    memory_add(end_user=person, text="전화는 010-4444-5555, 메일 secret.person@example.com")
    for url in ("/admin/endusers/enduser/", "/admin/endusers/identity/", "/admin/endusers/memory/"):
        page = admin_client.get(url).content.decode()
        assert "secret.person@example.com" not in page and "4444-5555" not in page and "01044445555" not in page, url
    assert "s***@example.com" in admin_client.get("/admin/endusers/enduser/").content.decode()
    assert admin_client.get(f"/admin/endusers/enduser/{person.pk}/change/").status_code == 200


def test_purge_expired_deletes_old_turns_and_their_index_rows(organization, agent, offline_llm,
                                                              django_capture_on_commit_callbacks):
    person = identity_resolve(organization=organization, kind="external_id", value="old-1", verified=True)
    with django_capture_on_commit_callbacks(execute=True):
        old = turn_run(organization=organization, agent=agent, channel="api", text="오래된 메시지", end_user=person)
        session = Session.objects.get(pk=old.session_id)
        turn_run(organization=organization, agent=agent, channel="api", text="최근 메시지", session=session)
        ancient = turn_run(organization=organization, agent=agent, channel="api", text="버려진 대화", end_user=person)
    long_ago = timezone.now() - timezone.timedelta(days=400)
    Turn.objects.filter(pk__in=[old.turn_id, ancient.turn_id]).update(created_at=long_ago)
    Session.objects.filter(pk=ancient.session_id).update(last_activity_at=long_ago)

    assert turns_purge_expired(days=365) == {"turns": 2, "sessions": 1}
    assert list(Turn.objects.values_list("user_text", flat=True)) == ["최근 메시지"]
    assert EndUserMessage.objects.count() == 1
    assert EndUserSession.objects.get().message_count == 1
    assert not Session.objects.filter(pk=ancient.session_id).exists()
    assert turns_purge_expired(days=0) == {"turns": 0, "sessions": 0}


def test_purge_expired_command(organization, agent, offline_llm, capsys):
    turn_run(organization=organization, agent=agent, channel="api", text="x")
    Turn.objects.update(created_at=timezone.now() - timezone.timedelta(days=30))
    call_command("purge_expired", "--days", "60", "--no-progress")
    assert Turn.objects.count() == 1
    call_command("purge_expired", "--days", "7", "--no-progress")
    assert Turn.objects.count() == 0
    assert "deleted 1 turns" in capsys.readouterr().out


def test_purge_task_uses_the_retention_setting(organization, agent, offline_llm, monkeypatch):
    from endusers import conf
    from endusers.tasks import turns_purge_expired_task

    turn_run(organization=organization, agent=agent, channel="api", text="x")
    Turn.objects.update(created_at=timezone.now() - timezone.timedelta(days=conf.RETENTION_DAYS + 1))
    assert turns_purge_expired_task.apply().get() == {"turns": 1, "sessions": 0}


def test_erase_command_keeps_counts_and_an_audit(organization, agent, offline_llm, django_capture_on_commit_callbacks,
                                                 capsys):
    person = identity_resolve(organization=organization, kind="kakao", value="k-erase", verified=True)
    with django_capture_on_commit_callbacks(execute=True):
        turn_run(organization=organization, agent=agent, channel="kakao", text="제 번호는 010-1111-2222", end_user=person)
    memory_add(end_user=person, text="주소는 서울")
    call_command("erase_end_user", str(person.pk), "--actor", "privacy-officer")
    assert "erased" in capsys.readouterr().out
    assert not Identity.objects.filter(end_user=person).exists() and not Memory.objects.filter(end_user=person).exists()
    assert Turn.objects.get().user_text == ""
    assert EndUserMessage.objects.filter(end_user=person).count() == 1  # anonymous counts stay
    record = ErasureRecord.objects.get()
    assert record.actor == "privacy-officer" and record.counts["messages"] == 1 and record.counts["identities"] == 1
    with pytest.raises(CommandError):
        call_command("erase_end_user", "999999")


def test_logging_filter_cuts_huge_lines_before_masking():
    """A 404 logs its whole path: the filter bounds the work by cutting the line first (issue 10, 5)."""
    from endusers.privacy import LOG_MAX_CHARS

    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s",
                               ("/" + "a" * 1_000_000 + "/lee@example.com",), None)
    PiiMaskingFilter().filter(record)
    message = record.getMessage()
    assert len(message) < LOG_MAX_CHARS + 40 and message.endswith("chars]")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "mail %s", ("kim@example.org",), None)
    PiiMaskingFilter().filter(record)
    assert record.getMessage() == "mail k***@example.org"
