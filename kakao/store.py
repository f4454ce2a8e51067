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


def _defaults(model, *, given: dict, computed: set[str]) -> tuple[list[str], list]:
    """Columns and values for an INSERT of `model`: `given` values, the model's defaults for the rest.

    `computed` columns are left out (the statement supplies them from its CTEs).
    """
    columns, values = [], []
    for field in model._meta.concrete_fields:
        column = field.column
        if column in computed:
            continue
        # The ORM's own default: the field's default, "" for a text field, else None.
        value = given[column] if column in given else field.get_default()
        if value is None and not field.null:
            raise LookupError(f"{model.__name__}.{field.name} has no default: set it in kakao.store")
        columns.append(column)
        values.append(field.get_db_prep_save(value, connection))
    return columns, values


def _quoted(names) -> str:
    return ", ".join(connection.ops.quote_name(name) for name in names)


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
    q = connection.ops.quote_name
    turn_columns, turn_values = _defaults(Turn, given={
        "id": turn_id, "user_text": storage_text(text), "client_message_id": token_hash,
        "status": Turn.Status.PENDING, "created_at": now, "updated_at": now,
    }, computed={"session_id", "seq", "author_id", "idempotency_key"})
    task_columns, task_values = _defaults(CallbackTask, given={
        "id": task_id, "organization_id": bot.organization_id, "bot_id": bot.pk, "turn_id": turn_id,
        "mode": CallbackTask.Mode.CALLBACK, "token_hash": token_hash, "callback_url": storage_text(callback.url),
        "status": CallbackTask.Status.PENDING, "received_at": now,
        "not_before": now + timedelta(seconds=conf.callback_settle_seconds()),
        "deadline": now + timedelta(seconds=conf.callback_deadline_seconds()), "created_at": now, "updated_at": now,
    }, computed={"kakao_user_id"})
    # runtime.services.idempotency_key_make for a message of a named session, computed where the
    # session id is known: sha256("org|channel|scope|session:<id>|client_message_id").
    key_prefix = f"{bot.organization_id}|{Channel.KAKAO}|bot:{bot.pk}|session:"
    key_suffix = f"|{token_hash}"
    idle_since = now - timedelta(minutes=bot.session_timeout_minutes)
    user_table, task_table = q(KakaoUser._meta.db_table), q(CallbackTask._meta.db_table)
    session_table, turn_table = q(Session._meta.db_table), q(Turn._meta.db_table)
    from endusers.models import EndUser

    end_user_table = q(EndUser._meta.db_table)
    sql = f"""
WITH u AS (
    SELECT ku.id, ku.end_user_id, ku.session_id
    FROM {user_table} ku JOIN {end_user_table} eu ON eu.id = ku.end_user_id
    WHERE ku.bot_id = %s AND ku.user_key = %s AND ku.session_id IS NOT NULL
      AND eu.merged_into_id IS NULL
      AND (ku.mode <> %s OR (ku.mode_expires_at IS NOT NULL AND ku.mode_expires_at <= %s))
), s AS (
    UPDATE {session_table} SET last_seq = last_seq + 1, last_activity_at = %s,
           end_user_id = COALESCE({session_table}.end_user_id, u.end_user_id)
    FROM u
    WHERE {session_table}.id = u.session_id AND {session_table}.status = %s
      AND {session_table}.agent_id = %s AND {session_table}.last_activity_at >= %s
    RETURNING {session_table}.id, {session_table}.last_seq, u.id AS kakao_user_id, u.end_user_id
), t AS (
    INSERT INTO {turn_table} (session_id, seq, author_id, idempotency_key, {_quoted(turn_columns)})
    SELECT s.id, s.last_seq, s.end_user_id,
           encode(sha256(convert_to(%s || s.id::text || %s, 'UTF8')), 'hex'),
           {", ".join(["%s"] * len(turn_values))}
    FROM s
    RETURNING id
), c AS (
    INSERT INTO {task_table} (kakao_user_id, {_quoted(task_columns)})
    SELECT s.kakao_user_id, {", ".join(["%s"] * len(task_values))}
    FROM s JOIN t ON true
    RETURNING id
), seen AS (
    UPDATE {user_table} SET last_seen_at = CASE WHEN last_seen_at < %s THEN %s ELSE last_seen_at END,
           plusfriend_user_key = CASE WHEN %s <> '' THEN %s ELSE plusfriend_user_key END,
           app_user_id = CASE WHEN %s <> '' THEN %s ELSE app_user_id END,
           is_friend = is_friend OR %s
    FROM s
    WHERE {user_table}.id = s.kakao_user_id
      AND (last_seen_at < %s OR (%s <> '' AND plusfriend_user_key <> %s)
           OR (%s <> '' AND app_user_id <> %s) OR (%s AND NOT is_friend))
)
SELECT s.kakao_user_id, s.end_user_id, s.id, s.last_seq, t.id, c.id FROM s, t, c
"""
    seen_before = now - timedelta(seconds=60)
    pf, app, friend = skill.plusfriend_user_key or "", skill.app_user_id or "", bool(skill.is_friend)
    params = [
        bot.pk, skill.user_id, KakaoUser.Mode.NAME_CHANGE, now,
        now, Session.Status.OPEN, bot.agent_id, idle_since,
        key_prefix, key_suffix, *turn_values,
        *task_values,
        seen_before, now, pf, pf, app, app, friend,
        seen_before, pf, pf, app, app, friend,
    ]

    def run():
        with connection.cursor() as cursor:
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
