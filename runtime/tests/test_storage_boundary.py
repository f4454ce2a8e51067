"""The storage boundary (issue 9, kind 3): values PostgreSQL refuses never reach the database.

Run on SQLite and PostgreSQL; on PostgreSQL each of these was a DataError (a 500) before.
"""

from __future__ import annotations

import json
import math

import pytest

from runtime.models import Agent, Session, Turn
from runtime.storage import storage_json, storage_text
from runtime.tests.test_chat_api import post

DIRTY = "a\x00b\ud800c"
DIRTY_JSON = {"k\x00ey": ["x\x00", {"deep": "\ud83d"}], "nan": math.nan, "inf": -math.inf, "ok": 1.5}


def test_storage_text_and_json():
    assert storage_text(DIRTY) == "ab\ufffdc"
    assert storage_text("평범한 텍스트 👨\u200d👩\u200d👧") == "평범한 텍스트 👨\u200d👩\u200d👧"
    assert storage_json(DIRTY_JSON) == {"key": ["x", {"deep": "\ufffd"}], "nan": None, "inf": None, "ok": 1.5}
    clean = {"a": [1, "b", {"c": None}]}
    assert storage_json(clean) is clean  # nothing to clean: no copy


@pytest.fixture
def session(organization, agent):
    return Session.objects.create(organization=organization, agent=agent, channel="api")


@pytest.mark.django_db
def test_every_write_path_cleans(session):
    # create / save
    turn = Turn.objects.create(session=session, seq=1, user_text=DIRTY, payload=DIRTY_JSON, error=DIRTY)
    turn.reply_text = DIRTY
    turn.save()
    # update()
    Turn.objects.filter(pk=turn.pk).update(error_code="x\x00y", diagnostics=DIRTY_JSON)
    # bulk_create / bulk_update
    more = Turn.objects.bulk_create([Turn(session=session, seq=2, user_text=DIRTY, payload={"v": DIRTY})])
    more[0].reply_text = DIRTY
    Turn.objects.bulk_update(more, ["reply_text"])
    Session.objects.filter(pk=session.pk).update(metadata={"visitor\x00": DIRTY})
    for stored in Turn.objects.all():
        for value in (stored.user_text, stored.reply_text, stored.error, stored.error_code):
            assert "\x00" not in value and "\ud800" not in value
        assert "\\u0000" not in json.dumps(stored.payload) and "NaN" not in json.dumps(stored.payload)
    assert Turn.objects.get(seq=1).diagnostics["nan"] is None
    assert Session.objects.get().metadata == {"visitor": "ab\ufffdc"}


@pytest.mark.django_db
def test_lookups_with_nul_do_not_fail(session):
    Turn.objects.create(session=session, seq=1, user_text="ab")
    assert Turn.objects.filter(user_text="a\x00b").count() == 1


def test_fields_deconstruct_as_django_fields():
    # So the swap needs no migration (and other branches' migrations merge cleanly).
    for field in (Turn._meta.get_field("user_text"), Turn._meta.get_field("payload"), Agent._meta.get_field("name")):
        assert field.deconstruct()[1].startswith("django.db.models.")


@pytest.mark.parametrize(
    "metadata",
    [
        {"source": "crm\u0000"},
        {"nested": {"list": ["\u0000", 1]}, "k\u0000": "v"},
        {"bad": "\ud800"},
    ],
    ids=["nul-value", "nul-key-nested", "lone-surrogate"],
)
def test_chat_api_metadata_with_refused_values(client, api_key, offline_llm, metadata):
    raw = json.dumps({"message": "안녕\u0000하세요", "metadata": metadata})
    response = post(client, raw, api_key)
    assert response.status_code == 200, response.content
    session = Session.objects.get(pk=response.json()["session_id"])
    assert "\\u0000" not in json.dumps(session.metadata) and "\\ud800" not in json.dumps(session.metadata)
    assert Turn.objects.get().user_text == "안녕하세요"


def test_chat_api_metadata_with_nan_is_a_clear_400(client, api_key, offline_llm):
    response = post(client, '{"message": "hi", "metadata": {"score": NaN, "max": Infinity}}', api_key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"
    assert Turn.objects.count() == 0


def test_client_message_id_with_a_lone_surrogate_is_a_clear_400(client, api_key, offline_llm):
    response = post(client, '{"message": "hi", "client_message_id": "m-\\ud800"}', api_key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert Turn.objects.count() == 0


@pytest.mark.django_db
def test_turn_start_cleans_what_a_channel_passes(organization, agent):
    from runtime.services import turn_start

    turn, _ = turn_start(organization=organization, agent=agent, channel="api", text="x\ud800y\x00",
                         client_message_id="cm\ud800\x00")
    turn.refresh_from_db()
    assert turn.user_text == "xy"
    assert turn.client_message_id == "cm\ufffd"
