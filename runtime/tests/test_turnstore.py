"""The turn's hot path: statements per JSON turn, the one-statement store's guarantees, the
per-process caches and their invalidation across processes (runtime/turnstore.py, runtime/hotcache.py)."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from django.db import connection, connections
from rest_framework.exceptions import AuthenticationFailed

from runtime import services, turnstore
from runtime.auth import api_key_hash, api_key_issue, api_key_last_used_flush, api_key_principal, api_key_revoke
from runtime.hotcache import HotCache, hot_cache, hot_cache_ready
from runtime.models import ApiKey, Channel, Session, Turn
from runtime.prompts import prompt_template_get_or_create, prompt_version_create

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


class WireCounter:
    """What psycopg sends to PostgreSQL from every thread of this process: each cursor execute
    (one round trip each: the statements of the hot path are single, autocommit statements) and
    each COMMIT/ROLLBACK of an open transaction (BEGIN travels with the first statement)."""

    def __init__(self, monkeypatch):
        self.statements: list[str] = []
        self.transaction_ends = 0
        counter = self
        real_execute = psycopg.Cursor.execute
        real_commit, real_rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def execute(cursor, query, *args, **kwargs):
            counter.statements.append(query if isinstance(query, str) else str(query))
            return real_execute(cursor, query, *args, **kwargs)

        def commit(conn):
            if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                counter.transaction_ends += 1
            return real_commit(conn)

        def rollback(conn):
            if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                counter.transaction_ends += 1
            return real_rollback(conn)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        monkeypatch.setattr(psycopg.Connection, "commit", commit)
        monkeypatch.setattr(psycopg.Connection, "rollback", rollback)

    @property
    def round_trips(self) -> int:
        return len(self.statements) + self.transaction_ends

    def reset(self):
        self.statements.clear()
        self.transaction_ends = 0


@pytest.fixture
def prompted_agent(agent):
    template = prompt_template_get_or_create(organization=agent.organization, name="support")
    prompt_version_create(template=template, text="You are the Acme bot.", activate=True)
    agent.prompt = template
    agent.save()
    return agent


@pytest.mark.postgres
def test_a_warm_json_turn_is_two_round_trips_to_postgresql(client, api_key, prompted_agent, fake_llm, monkeypatch,
                                                           settings):
    """Counted: every statement psycopg sends (all threads) plus COMMIT/ROLLBACK of open transactions.
    Warm: caches filled, and pooled connections in use (the pool pings one idle for
    DB_POOL_CHECK_IDLE_SECONDS, here longer than the whole test run: earlier tests left idle ones)."""
    settings.DB_POOL_CHECK_IDLE_SECONDS = 3600
    assert hot_cache_ready()
    wire = WireCounter(monkeypatch)
    first = client.post("/api/runtime/chat", {"message": "안녕"}, content_type="application/json", **_headers(api_key))
    assert first.status_code == 200, first.content
    api_key_last_used_flush()  # the first use of the key wrote last_used_at off the request path

    wire.reset()  # a new anonymous session, warm caches
    response = client.post("/api/runtime/chat", {"message": "두 번째"}, content_type="application/json",
                           **_headers(api_key))
    assert response.status_code == 200 and response.json()["message"]
    assert wire.round_trips <= 2, (wire.transaction_ends, [q[:80] for q in wire.statements])
    assert wire.transaction_ends == 0
    assert wire.statements[0].lstrip().startswith("WITH dup AS") and "INSERT INTO" in wire.statements[0]
    assert wire.statements[1].lstrip().startswith("WITH t AS (UPDATE")

    wire.reset()  # the session continued: seq 2 with the first turn as history
    session_id = response.json()["session_id"]
    again = client.post("/api/runtime/chat", {"message": "세 번째", "session_id": session_id,
                                              "client_message_id": "m-3"},
                        content_type="application/json", **_headers(api_key))
    assert again.status_code == 200
    assert wire.round_trips <= 2, wire.statements
    sent = fake_llm.requests[-1]["messages"]
    assert sent[0]["content"].startswith("You are the Acme bot.")
    assert {"role": "assistant", "content": response.json()["message"]} in sent
    turn = Turn.objects.get(pk=again.json()["turn_id"])
    assert (turn.seq, turn.status, turn.session.last_seq) == (2, Turn.Status.COMPLETED, 2)
    assert turn.prompt_version.text == "You are the Acme bot."

    wire.reset()  # a retry: the stored turn, replayed
    replay = client.post("/api/runtime/chat", {"message": "세 번째", "session_id": session_id,
                                               "client_message_id": "m-3"},
                         content_type="application/json", **_headers(api_key))
    assert replay.json()["turn_id"] == str(turn.id) and Turn.objects.filter(session_id=session_id).count() == 2


def _store(organization, agent, text, *, session_id=None, cmid=""):
    data = {"message": text, "client_message_id": cmid}
    if session_id:
        data["session_id"] = session_id
    return services.api_chat_start(organization=organization, data=data)


def test_store_is_idempotent_and_refuses_an_id_of_another_conversation(organization, agent):
    """The same rules on both paths (PostgreSQL: one statement; SQLite: the ORM)."""
    first, created = _store(organization, agent, "하나", cmid="c-1")
    assert created and first.seq == 1
    again, created = _store(organization, agent, "하나", cmid="c-1")
    assert not created and again.pk == first.pk
    # The retry of a first message that now names its session finds it by the principal key.
    named, created = _store(organization, agent, "하나", session_id=first.session_id, cmid="c-1")
    assert not created and named.pk == first.pk
    other, _ = _store(organization, agent, "다른 대화")
    # The same id naming another conversation: its principal key belongs to the first one.
    with pytest.raises(services.ApiError) as caught:
        _store(organization, agent, "하나", session_id=other.session_id, cmid="c-1")
    assert caught.value.code == "idempotency_conflict" and caught.value.status == 409
    # Within a named session the id is keyed by that session: a new turn there.
    fresh, created = _store(organization, agent, "또", session_id=other.session_id, cmid="c-2")
    assert created and fresh.seq == 2
    assert Session.objects.count() == 2 and Turn.objects.count() == 3
    assert sorted(Session.objects.values_list("last_seq", flat=True)) == [1, 2]


def test_store_of_another_organizations_session_is_404(organization, agent, other_organization):
    from runtime.models import Agent

    other_agent = Agent.objects.create(organization=other_organization, name="support")
    theirs, _ = _store(other_organization, other_agent, "그쪽")
    with pytest.raises(services.ApiError) as caught:
        _store(organization, agent, "여기", session_id=theirs.session_id)
    assert caught.value.code == "session_not_found" and caught.value.status == 404
    assert Session.objects.get(pk=theirs.session_id).last_seq == 1


@pytest.mark.postgres
def test_sequence_numbers_are_unique_and_gapless_under_concurrent_stores(organization, agent):
    first, _ = _store(organization, agent, "0")
    errors, barrier = [], threading.Barrier(8)

    def send(i):
        try:
            barrier.wait()
            _store(organization, agent, str(i), session_id=first.session_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    seqs = sorted(Turn.objects.filter(session_id=first.session_id).values_list("seq", flat=True))
    assert seqs == list(range(1, 10))
    assert Session.objects.get(pk=first.session_id).last_seq == 9


@pytest.mark.postgres
def test_a_store_that_waited_for_the_session_lock_does_not_trust_its_snapshot(organization, agent):
    """Another transaction stores turn 2 and holds the session's row lock; this store waits for
    it: its statement snapshot cannot see turn 2, so it must not report 0 pending predecessors."""
    first, _ = _store(organization, agent, "하나")
    services._turn_finish(first.id, loaded=first, status=Turn.Status.COMPLETED, reply_text="네")
    session_id = first.session_id
    db = connection.settings_dict
    other = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
                            dbname=db["NAME"], autocommit=False)
    try:
        with other.cursor() as cur:
            cur.execute('UPDATE "D_conv_sessions" SET last_seq = 2 WHERE id = %s', [session_id])
            cur.execute('INSERT INTO "D_conv_turns" (id, session_id, seq, user_text, client_message_id, reply_text, '
                        "payload, status, handled_by, model, error_code, error, diagnostics, created_at, updated_at) "
                        "VALUES (%s, %s, 2, 'two', '', '', '{}', 'streaming', '', '', '', '', '{}', now(), now())",
                        [uuid.uuid4(), session_id])
        result = {}

        def store():
            try:
                text = "세 번째"
                result["stored"], _ = turnstore.turn_store_fast(
                    organization=organization, agent=agent, channel=Channel.API, text=text, session_id=session_id)
            finally:
                connections.close_all()

        thread = threading.Thread(target=store)
        thread.start()
        with connection.cursor() as cur:  # wait on state: the store is blocked on the row lock
            for _ in range(500):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'WITH dup AS%%'")
                if cur.fetchone()[0]:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the store never waited for the lock")
        other.commit()
        thread.join()
    finally:
        other.close()
    stored = result["stored"]
    assert stored.turn.seq == 3
    assert stored.pending is None and stored.history is None  # the caller re-checks
    assert services._predecessors_pending(stored.turn) == 1


@pytest.mark.postgres
def test_finish_is_one_statement_and_sends_turn_finished(organization, agent, monkeypatch):
    from runtime import signals

    turn, _ = _store(organization, agent, "안녕")
    seen = []
    signals.turn_finished.connect(lambda sender, turn, **kw: seen.append((turn.pk, turn.status)), weak=False,
                                  dispatch_uid="test-finish")
    try:
        wire = WireCounter(monkeypatch)
        finished = services._turn_finish(turn.id, loaded=turn, status=Turn.Status.COMPLETED, reply_text="네\x00",
                                         payload={"quick_replies": []}, model="m", tokens_out=3)
    finally:
        signals.turn_finished.disconnect(dispatch_uid="test-finish")
    assert wire.round_trips == 1
    assert seen == [(turn.pk, Turn.Status.COMPLETED)] and finished is turn
    stored = Turn.objects.get(pk=turn.pk)
    assert (stored.status, stored.reply_text, stored.tokens_out) == (Turn.Status.COMPLETED, "네", 3)
    assert stored.completed_at is not None and stored.session.last_activity_at >= stored.completed_at


# --- per-process caches -------------------------------------------------------------------

def test_a_revoked_key_stops_working_in_this_process_at_once(organization, api_key):
    assert api_key_principal(api_key).organization == organization
    key = ApiKey.objects.get(key_hash=api_key_hash(api_key))
    api_key_revoke(api_key=key)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        api_key_principal(api_key)


def test_a_cached_key_costs_no_query(organization, api_key, django_assert_num_queries):
    assert hot_cache_ready()
    api_key_principal(api_key)
    api_key_last_used_flush()
    with django_assert_num_queries(0):
        api_key_principal(api_key)


def test_last_used_is_written_off_the_request_path_once_per_minute(organization, api_key):
    key = ApiKey.objects.get(key_hash=api_key_hash(api_key))
    assert key.last_used_at is None
    api_key_principal(api_key)
    api_key_last_used_flush()
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    api_key_principal(api_key)
    api_key_last_used_flush()
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first


def test_prompt_activation_reaches_the_next_turn(organization, prompted_agent):
    template = prompted_agent.prompt
    _store(organization, prompted_agent, "하나")
    from runtime.context import active_prompt_version

    assert active_prompt_version(organization_id=organization.pk, template_id=template.pk).text == "You are the Acme bot."
    prompt_version_create(template=template, text="You are the new bot.", activate=True)
    assert active_prompt_version(organization_id=organization.pk, template_id=template.pk).text == "You are the new bot."


def test_an_agent_deactivated_is_no_longer_served(organization, agent):
    from runtime.selectors import agent_for_org_cached

    assert agent_for_org_cached(organization=organization) == agent
    agent.is_active = False
    agent.save()
    with pytest.raises(services.ApiError) as caught:
        agent_for_org_cached(organization=organization)
    assert caught.value.code == "no_agent"


@pytest.mark.redis
def test_a_revoke_reaches_another_process_through_redis(organization, settings):
    """Two caches with their own listeners stand for two processes on one Redis."""
    channel = f"test-hotcache-{uuid.uuid4()}"
    here = HotCache(redis_url=settings.REDIS_URL, channel=channel, ttl=60)
    there = HotCache(redis_url=settings.REDIS_URL, channel=channel, ttl=60)
    try:
        for cache in (here, there):
            cache.usable  # noqa: B018 - starts the listener
            assert cache._listening.wait(5), "listener never subscribed"
        key, raw = api_key_issue(organization=organization, name="two-processes")
        loads = []

        def load():
            loads.append(1)
            found = ApiKey.objects.get(pk=key.pk)
            return found.organization_id, found

        assert there.get(("api_key", key.key_hash), load).revoked_at is None
        assert there.get(("api_key", key.key_hash), load).revoked_at is None
        assert len(loads) == 1  # served from the cache
        before = there.invalidations
        api_key_revoke(api_key=key)
        here.organization_changed(organization.pk)  # what the commit hook does in the revoking process
        with there.invalidated:
            assert there.invalidated.wait_for(lambda: there.invalidations > before, timeout=5)
        assert there.get(("api_key", key.key_hash), load).revoked_at is not None
        assert len(loads) == 2
    finally:
        here.close()
        there.close()


@pytest.mark.redis
def test_the_global_cache_hears_revokes_published_by_another_process(organization, api_key, settings):
    cache = hot_cache()
    cache.usable  # noqa: B018 - starts the listener
    assert cache._listening.wait(5)
    api_key_principal(api_key)
    api_key_principal(api_key)  # cached
    other = HotCache(redis_url=settings.REDIS_URL, channel=cache.channel, ttl=60)
    try:
        key = ApiKey.objects.get(key_hash=api_key_hash(api_key))
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=key.created_at)  # no signal in this process
        before = cache.invalidations
        other.organization_changed(organization.pk)  # "another process" revoked it and published
        with cache.invalidated:
            assert cache.invalidated.wait_for(lambda: cache.invalidations > before, timeout=5)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            api_key_principal(api_key)
    finally:
        other.close()


def test_without_a_listener_every_read_goes_to_the_database():
    cache = HotCache(redis_url="redis://127.0.0.1:1/0", channel="unreachable", ttl=60)
    try:
        loads = []
        for _ in range(3):
            cache.get(("k",), lambda: (loads.append(1), (1, "v"))[1])
        assert len(loads) == 3 and cache.usable is False
    finally:
        cache.close()


def test_a_read_that_raced_an_invalidation_is_not_kept():
    cache = HotCache(redis_url=None, channel="local", ttl=60)

    def load_racing():
        cache.drop_local(7)  # the revoke lands while this read is in flight
        return 7, "stale"

    assert cache.get(("k",), load_racing) == "stale"
    assert cache.get(("k",), lambda: (7, "fresh")) == "fresh"


def test_a_known_persons_session_continued_by_session_id_keeps_its_author(client, api_key, fake_llm):
    first = client.post("/api/runtime/chat", {"message": "안녕", "external_id": "user-7"},
                        content_type="application/json", **_headers(api_key)).json()
    again = client.post("/api/runtime/chat", {"message": "또", "session_id": first["session_id"]},
                        content_type="application/json", **_headers(api_key))
    assert again.status_code == 200, again.content
    earlier, later = Turn.objects.filter(session_id=first["session_id"]).order_by("seq")
    assert later.seq == 2 and later.author_id == earlier.author_id is not None
    assert later.status == Turn.Status.COMPLETED


def test_a_retry_of_a_claimed_turn_nobody_answers_ends_as_abandoned(organization, agent):
    """The hot path stores a turn already claimed; if its request vanished before answering, a
    retry does not wait for it forever: past RUNTIME_TURN_STALE_SECONDS it is failed `abandoned`."""
    from asgiref.sync import async_to_sync
    from django.utils import timezone

    turn, _ = _store(organization, agent, "하나", cmid="lost-1")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.STREAMING,
                                           updated_at=timezone.now() - timezone.timedelta(hours=1))
    retried, created = _store(organization, agent, "하나", cmid="lost-1")
    assert not created and retried.pk == turn.pk
    outcome = async_to_sync(services.outcome_gather)(services.turn_answer_stream(turn=retried))
    assert outcome.error["code"] == "abandoned"
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.FAILED
