"""The Kakao acknowledgement's one round trip: a returning user's message stored by one SQL statement.

`acknowledgement_store` writes, in one PostgreSQL statement (data-modifying CTEs, one implicit
transaction in autocommit), everything a callback acknowledgement promises is durable:

    kakao user      last_seen_at / plusfriend key / appUserId / isFriend refreshed (when changed)
    session         last_seq + 1 and last_activity_at, under the row lock the UPDATE takes
    turn            the user's message, seq = the new last_seq, pending, idempotency key as
                    runtime.services.turn_start computes it for a session's message
    callback task   pending, token hash (unique), deadline, settle time

The statement only writes when the common case holds: the Kakao user exists, its end user is not
merged away, no name-change mode is active, and its current session is open, of the bot's agent and
not idle past the bot's timeout. Otherwise it writes nothing and returns None, and the caller takes
the ORM path (kakao.services.skill_receive), which handles first contact, new conversations, the
name flows and duplicates. A unique violation (the same callback token again, a token of another
request, a turn key already stored) aborts the whole statement — nothing half-written — and also
returns None: the ORM path answers those cases as it always did.

What the ORM path does after commit on the request (the end-user timeline through
runtime.signals.turn_stored) is left to the delivery job here (`announce=True`).

SQLite has no data-modifying CTEs with RETURNING across tables; there the ORM path is used.
Column lists come from the models' metadata, so a new field with a default is written as the ORM
would write it (kakao/tests/test_store.py checks the statement against the models).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction

from kakao import conf
from kakao.models import CallbackTask, KakaoBot, KakaoUser
from kakao.parsing import SkillRequest
from kakao.security import CallbackUrl
from runtime.models import Channel, Session, Turn
from runtime.storage import storage_text


@dataclass(frozen=True)
class StoredAcknowledgement:
    """What the statement stored (ids only: nothing is read back)."""

    kakao_user_id: int
    end_user_id: int
    session_id: uuid.UUID
    turn_id: uuid.UUID
    seq: int
    task_id: uuid.UUID


def supported() -> bool:
    return connection.vendor == "postgresql"


def _literal(field, value) -> str | None:
    """A model default as an SQL literal (None when it is not one of the plain kinds rendered here)."""
    import json

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if value == "":
        return "''"
    if isinstance(value, (dict, list)) and field.get_internal_type() == "JSONField":
        return "'" + json.dumps(value, ensure_ascii=True).replace("'", "''") + "'::jsonb"
    return None


def _insert_parts(model, *, given: tuple[str, ...], computed: set[str]) -> tuple[list[str], list[str], list]:
    """Columns and value expressions for an INSERT of `model`.

    `given` columns take a parameter each (in that order); `computed` ones are left to the statement;
    every other column gets the model's own default (what the ORM would write: the field's default,
    "" for a text field, else NULL) as a literal, or as a fixed parameter when it is not a plain value.
    Returns (columns, expressions, fixed parameters in order of appearance, None for a given one).
    """
    columns, expressions, fixed = [], [], []
    for field in model._meta.concrete_fields:
        column = field.column
        if column in computed:
            continue
        columns.append(column)
        if column in given:
            expressions.append("%s")
            fixed.append(None)
            continue
        value = field.get_default()
        if value is None and not field.null:
            raise LookupError(f"{model.__name__}.{field.name} has no default: set it in kakao.store")
        literal = _literal(field, value)
        if literal is None:
            expressions.append("%s")
            fixed.append(field.get_db_prep_save(value, connection))
        else:
            expressions.append(literal)
    return columns, expressions, fixed


def _prepared_cursor():
    """A Django cursor over a server-side-binding psycopg cursor: the statement is prepared once per
    connection (psycopg prepares a query after a few executions) instead of interpolating ~60
    parameters into its text on every call, which Django's client-side cursor does. Still a Django
    cursor: execute wrappers and query logging (the query-count test) see it."""
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = psycopg.Cursor(connection.connection)
    return connection._prepare_cursor(raw)


def _quoted(names) -> str:
    return ", ".join(connection.ops.quote_name(name) for name in names)


_TURN_GIVEN = ("id", "user_text", "client_message_id", "status", "created_at", "updated_at")
_TASK_GIVEN = ("id", "organization_id", "bot_id", "turn_id", "mode", "token_hash", "callback_url", "status",
               "received_at", "not_before", "deadline", "created_at", "updated_at")
_cached: dict = {}


def _statement():
    """The statement (built once per process from the models) and its parameter plan."""
    if "sql" in _cached:
        return _cached["sql"]
    from endusers.models import EndUser

    q = connection.ops.quote_name
    turn_columns, turn_exprs, turn_fixed = _insert_parts(
        Turn, given=_TURN_GIVEN, computed={"session_id", "seq", "author_id", "idempotency_key"})
    task_columns, task_exprs, task_fixed = _insert_parts(CallbackTask, given=_TASK_GIVEN, computed={"kakao_user_id"})
    turn_order = [c for c in turn_columns if c in _TURN_GIVEN]
    task_order = [c for c in task_columns if c in _TASK_GIVEN]
    users, tasks = q(KakaoUser._meta.db_table), q(CallbackTask._meta.db_table)
    sessions, turns, end_users = q(Session._meta.db_table), q(Turn._meta.db_table), q(EndUser._meta.db_table)
    # p: the request's values, each passed once. u: the returning user (guards: not merged away, no
    # name-change mode). s: the session's next seq under its row lock (guards: open, the bot's agent,
    # not idle). t, c: the turn and the callback task. seen: the user's last_seen_at/keys when changed.
    # Every write reads an earlier CTE's rows, so a failed guard writes nothing.
    sql = f"""WITH p AS (SELECT %s::bigint bot, %s::text user_key, %s::timestamptz now, %s::timestamptz idle_since,
 %s::timestamptz seen_before, %s::text pf, %s::text app, %s::boolean friend, %s::bigint agent,
 %s::text key_prefix, %s::text key_suffix),
u AS (SELECT ku.id, ku.end_user_id, ku.session_id FROM {users} ku JOIN {end_users} eu ON eu.id = ku.end_user_id, p
 WHERE ku.bot_id = p.bot AND ku.user_key = p.user_key AND ku.session_id IS NOT NULL AND eu.merged_into_id IS NULL
 AND (ku.mode <> '{KakaoUser.Mode.NAME_CHANGE}' OR (ku.mode_expires_at IS NOT NULL AND ku.mode_expires_at <= p.now))),
s AS (UPDATE {sessions} ss SET last_seq = ss.last_seq + 1, last_activity_at = p.now,
 end_user_id = COALESCE(ss.end_user_id, u.end_user_id) FROM u, p
 WHERE ss.id = u.session_id AND ss.status = '{Session.Status.OPEN}' AND ss.agent_id = p.agent
 AND ss.last_activity_at >= p.idle_since
 RETURNING ss.id, ss.last_seq, u.id AS kakao_user_id, u.end_user_id),
t AS (INSERT INTO {turns} (session_id, seq, author_id, idempotency_key, {_quoted(turn_columns)})
 SELECT s.id, s.last_seq, s.end_user_id, encode(sha256(convert_to(p.key_prefix || s.id::text || p.key_suffix, 'UTF8')), 'hex'),
 {", ".join(turn_exprs)} FROM s, p RETURNING id),
c AS (INSERT INTO {tasks} (kakao_user_id, {_quoted(task_columns)})
 SELECT s.kakao_user_id, {", ".join(task_exprs)} FROM s, t RETURNING id),
seen AS (UPDATE {users} ku SET last_seen_at = GREATEST(ku.last_seen_at, p.now),
 plusfriend_user_key = CASE WHEN p.pf <> '' THEN p.pf ELSE ku.plusfriend_user_key END,
 app_user_id = CASE WHEN p.app <> '' THEN p.app ELSE ku.app_user_id END, is_friend = ku.is_friend OR p.friend
 FROM s, p WHERE ku.id = s.kakao_user_id AND (ku.last_seen_at < p.seen_before
 OR (p.pf <> '' AND ku.plusfriend_user_key <> p.pf) OR (p.app <> '' AND ku.app_user_id <> p.app)
 OR (p.friend AND NOT ku.is_friend)))
SELECT s.kakao_user_id, s.end_user_id, s.id, s.last_seq, t.id, c.id FROM s, t, c"""
    _cached["sql"] = (sql, turn_order, turn_fixed, task_order, task_fixed)
    return _cached["sql"]


def acknowledgement_store(*, bot: KakaoBot, skill: SkillRequest, text: str, callback: CallbackUrl,
                          now: datetime) -> StoredAcknowledgement | None:
    """Store a returning user's message and its callback task in one statement (PostgreSQL).

    `text` is the message as the pipeline answers it (already validated and cleaned). Returns None,
    having written nothing, when this is not the common case (see the module docstring) or on
    SQLite; the caller then uses the ORM path.
    """
    if not supported():
        return None
    turn_id, task_id = uuid.uuid4(), uuid.uuid4()
    token_hash = callback.token_hash
    sql, turn_order, turn_fixed, task_order, task_fixed = _statement()
    turn_given = {
        "id": turn_id, "user_text": storage_text(text), "client_message_id": token_hash,
        "status": str(Turn.Status.PENDING), "created_at": now, "updated_at": now,
    }
    task_given = {
        "id": task_id, "organization_id": bot.organization_id, "bot_id": bot.pk, "turn_id": turn_id,
        "mode": str(CallbackTask.Mode.CALLBACK), "token_hash": token_hash, "callback_url": storage_text(callback.url),
        "status": str(CallbackTask.Status.PENDING), "received_at": now,
        "not_before": now + timedelta(seconds=conf.callback_settle_seconds()),
        "deadline": now + timedelta(seconds=conf.callback_deadline_seconds()), "created_at": now, "updated_at": now,
    }

    def values(order, fixed, given):
        names = iter(order)
        return [given[next(names)] if value is None else value for value in fixed]

    # runtime.services.idempotency_key_make for a message of a named session, computed where the
    # session id is known: sha256("org|channel|scope|session:<id>|client_message_id").
    key_prefix = f"{bot.organization_id}|{Channel.KAKAO}|bot:{bot.pk}|session:"
    params = [
        bot.pk, skill.user_id, now, now - timedelta(minutes=bot.session_timeout_minutes), now - timedelta(seconds=60),
        skill.plusfriend_user_key or "", skill.app_user_id or "", bool(skill.is_friend), bot.agent_id,
        key_prefix, f"|{token_hash}",
        *values(turn_order, turn_fixed, turn_given),
        *values(task_order, task_fixed, task_given),
    ]

    def run():
        with _prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint, so a refused statement leaves the caller's transaction usable
                row = run()
        else:
            row = run()  # autocommit: the statement is its own transaction
    except IntegrityError:
        return None  # a duplicate or reused token, or a key already stored: the ORM path answers it
    if row is None:
        return None
    return StoredAcknowledgement(kakao_user_id=row[0], end_user_id=row[1], session_id=row[2], seq=row[3],
                                 turn_id=row[4], task_id=row[5])
