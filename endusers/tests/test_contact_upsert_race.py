"""Concurrent upserts of one new identity find one contact for everyone, never a 500 (issue 11, 13)."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from endusers import services
from endusers.models import EndUser, Identity


def _lookup_misses_once(monkeypatch):
    """The first lookup sees nothing, as if the competitor committed right after it."""
    real_held = services._identities_held
    calls = []

    def held(**kwargs):
        calls.append(1)
        return {} if len(calls) == 1 else real_held(**kwargs)

    monkeypatch.setattr(services, "_identities_held", held)


def test_a_lost_race_returns_the_winners_contact(organization, monkeypatch):
    """Another request inserts the identity between our lookup and our insert: we get its contact."""
    winner, _ = services.contact_upsert(organization=organization, email="new@example.com")
    _lookup_misses_once(monkeypatch)
    contact, created = services.contact_upsert(organization=organization, email="new@example.com", display_name="민수")
    assert contact.pk == winner.pk and created is False
    assert contact.display_name == "민수"
    assert Identity.objects.filter(organization=organization, kind="email", value="new@example.com").count() == 1
    assert EndUser.objects.filter(organization=organization).count() == 1  # the loser's row was rolled back


def test_a_lost_race_over_http_is_a_200_with_the_same_contact(client, api_key, organization, monkeypatch):
    competitor, _ = services.contact_upsert(organization=organization, email="race@example.com")
    _lookup_misses_once(monkeypatch)
    response = client.post("/api/contacts", data=json.dumps({"email": "race@example.com"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == competitor.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_six_concurrent_upserts_of_one_new_email(organization):
    """Six threads, one barrier, real PostgreSQL unique index: one contact, one `created`, no error."""
    barrier = threading.Barrier(6)
    results, errors = [], []

    def upsert():
        try:
            barrier.wait()
            results.append(services.contact_upsert(organization=organization, email="six@example.com"))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upsert) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({contact.pk for contact, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert EndUser.objects.filter(organization=organization).count() == 1
