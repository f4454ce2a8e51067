"""The turn's hot path in the database: store a message in one statement, finish it in one.

    turn_store_fast(...)  -> StoredTurn   idempotency check, session insert or seq increment, turn
                                          insert already claimed (`streaming`), predecessor check and
                                          the history the context builder needs: ONE statement
    turn_finish_fast(turn_id, loaded, **fields) -> Turn
                                          the turn's final state and the session's last_activity_at:
                                          ONE statement

PostgreSQL runs hand-written SQL (data-modifying CTEs, autocommit: one round trip each, no
BEGIN/COMMIT). Other engines (SQLite, the embedded default) take the ORM path of runtime.services
(turn_start + _turn_open, _turn_finish) with the same results. The ORM stays the model layer:
the SQL below writes the same columns the models define, through the model fields' own
`get_db_prep_save` (so the storage boundary of runtime/storage.py still cleans every value).

Guarantees (docs/runtime.md "The hot path" explains each):
- idempotency: a retried client_message_id finds its turn in the same statement (the keys are
  checked first, session key before principal key); two retries racing past that check meet the
  unique idempotency_key: the statement fails as a whole (no session, no seq taken) and the
  stored turn is replayed (IntegrityError path, as turn_start does). Not ON CONFLICT DO NOTHING:
  that would leave a seq taken without its turn, or a session without turns.
- ordering across processes: `UPDATE … SET last_seq = last_seq + 1 … RETURNING` takes the
  session row's lock for the statement only, so sequence numbers are gap-free and unique. The
  predecessor count and the history are read in the same statement; they are trusted only when
  the statement's snapshot saw the session at last_seq - 1 (no other turn committed between the
  snapshot and the lock), otherwise the caller re-checks with a statement of its own.
- the turn is inserted `streaming` (claimed): nobody else answers it; when predecessors are
  pending the caller waits as before (the abandoned-turn rule applies there).
- signals: turn_stored / turn_finished are sent with the same arguments, on commit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from runtime import signals
from runtime.models import Agent, Organization, Session, Turn

SESSIONS = f'"{Session._meta.db_table}"'
TURNS = f'"{Turn._meta.db_table}"'
_FINISHED_SQL = ", ".join(f"'{s}'" for s in Turn.FINISHED)


@dataclass
class StoredTurn:
    """The result of a store: `claimed` when this call inserted the turn `streaming`; `pending` the
    earlier turns not yet finished (None: unknown, check again); `history` the session's latest
    completed turns as (user_text, reply_text), newest first (None: not read, read it again)."""

    turn: Turn
    created: bool
    claimed: bool = False
    pending: int | None = None
    history: list[tuple[str, str]] | None = None


def fast_path_available() -> bool:
    """Whether the hand-written SQL applies: PostgreSQL (any other engine takes the ORM path)."""
    return connection.vendor == "postgresql"


def _prep(model, name: str, value):
    field = model._meta.get_field(name)
    if field.is_relation:
        return field.column, (value.pk if hasattr(value, "_meta") else value)
    return field.column, field.get_db_prep_save(value, connection)


class SessionNotFound(Exception):
    pass


def turn_store_fast(
    *,
    organization: Organization,
    agent: Agent | None,
    channel: str,
    text: str,
    session_id: uuid.UUID | None,
    end_user=None,
    client_message_id: str = "",
    keys: list[str] | None = None,
    session_metadata: dict | None = None,
) -> tuple[StoredTurn | None, str | None]:
    """Store one message on PostgreSQL in one statement.

    `text` and `client_message_id` are validated already; `keys`: the idempotency keys in the order
    they are looked up (the first is the new turn's). `session_id` None opens a new session with
    `agent`; else the organization's session of that id gets the next seq (`agent` is ignored:
    a session keeps its agent, resolved by the caller from the returned row).
    Returns (stored, None), or (None, id of the existing turn of a key) for a retry.
    Raises SessionNotFound (no such session in the organization); IntegrityError for a racing retry.
    """
    keys = [k for k in (keys or []) if k]
    now = timezone.now()
    turn_id = uuid.uuid4()
    _, text_db = _prep(Turn, "user_text", text)
    _, cmid_db = _prep(Turn, "client_message_id", client_message_id)
    params = {
        "org": organization.pk, "now": now, "tid": turn_id, "text": text_db, "cmid": cmid_db,
        "key": keys[0] if keys else None, "k1": keys[0] if keys else None,
        "k2": keys[1] if len(keys) > 1 else None, "end_user": end_user.pk if end_user is not None else None,
        "empty": _prep(Turn, "payload", {})[1], "max": settings.RUNTIME_HISTORY_MAX_TURNS,
    }
    dup = (f"SELECT id FROM {TURNS} WHERE idempotency_key IN (%(k1)s, %(k2)s) "
           "ORDER BY (idempotency_key = %(k1)s) DESC LIMIT 1") if keys else "SELECT NULL::uuid AS id WHERE false"
    turn_insert = (
        f"INSERT INTO {TURNS} (id, session_id, seq, author_id, user_text, client_message_id, idempotency_key, "
        "reply_text, payload, status, handled_by, model, error_code, error, diagnostics, created_at, started_at, "
        "updated_at) "
        "SELECT %(tid)s, s.id, s.last_seq, COALESCE(%(end_user)s, s.end_user_id), %(text)s, %(cmid)s, %(key)s, "
        "'', %(empty)s, 'streaming', '', '', '', '', %(empty)s, %(now)s, %(now)s, %(now)s FROM s RETURNING id, seq"
    )
    if session_id is None:
        sid = uuid.uuid4()
        params.update({"sid": sid, "agent": agent.pk, "channel": channel,
                       "metadata": _prep(Session, "metadata", session_metadata or {})[1]})
        sql = (
            f"WITH dup AS ({dup}), "
            f"s AS (INSERT INTO {SESSIONS} (id, organization_id, agent_id, channel, end_user_id, metadata, status, "
            "last_seq, created_at, last_activity_at) "
            "SELECT %(sid)s, %(org)s, %(agent)s, %(channel)s, %(end_user)s, %(metadata)s, 'open', 1, %(now)s, %(now)s "
            "WHERE NOT EXISTS (SELECT 1 FROM dup) RETURNING id, last_seq, end_user_id), "
            f"t AS ({turn_insert}) "
            "SELECT (SELECT id FROM t), (SELECT id FROM dup)"
        )
    else:
        params["sid"] = session_id
        sql = (
            f"WITH dup AS ({dup}), "
            f"snap AS (SELECT last_seq FROM {SESSIONS} WHERE id = %(sid)s AND organization_id = %(org)s), "
            f"s AS (UPDATE {SESSIONS} SET last_seq = last_seq + 1, last_activity_at = %(now)s, "
            "end_user_id = COALESCE(end_user_id, %(end_user)s) "
            "WHERE id = %(sid)s AND organization_id = %(org)s AND NOT EXISTS (SELECT 1 FROM dup) "
            "RETURNING id, last_seq, end_user_id, agent_id, channel, metadata::text AS metadata, status, created_at), "
            f"t AS ({turn_insert}), "
            f"pending AS (SELECT count(*) AS n FROM {TURNS} WHERE session_id = %(sid)s "
            f"AND seq < (SELECT last_seq FROM s) AND status NOT IN ({_FINISHED_SQL})), "
            f"hist AS (SELECT user_text, reply_text FROM {TURNS} WHERE session_id = %(sid)s "
            "AND seq < (SELECT last_seq FROM s) AND status = 'completed' ORDER BY seq DESC LIMIT %(max)s) "
            "SELECT (SELECT id FROM t), (SELECT id FROM dup), (SELECT last_seq FROM snap), s.last_seq, "
            "s.end_user_id, s.agent_id, s.channel, s.metadata, s.status, s.created_at, "
            "(SELECT n FROM pending), "
            "(SELECT json_agg(json_build_array(user_text, reply_text))::text FROM hist) "
            "FROM (SELECT 1) AS one LEFT JOIN s ON true"
        )
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            # Inside a caller's transaction (tests): a savepoint, so a racing retry's unique
            # violation does not break the caller's transaction.
            with transaction.atomic():
                cursor.execute(sql, params)
                row = cursor.fetchone()
        else:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    if row[0] is None:
        if row[1] is not None:
            return None, row[1]
        raise SessionNotFound(session_id)

    if session_id is None:
        session = Session(id=params["sid"], organization=organization, agent=agent, channel=channel,
                          end_user=end_user, metadata=session_metadata or {}, status=Session.Status.OPEN,
                          last_seq=1, created_at=now, last_activity_at=now)
        seq, pending, history = 1, 0, []
    else:
        (_, _, snap_seq, seq, end_user_id, agent_id, row_channel, metadata, status, created_at, pending,
         history_json) = row
        session = Session(id=session_id, organization_id=organization.pk, agent_id=agent_id, channel=row_channel,
                          end_user_id=end_user_id, metadata=json.loads(metadata) if metadata else {}, status=status,
                          last_seq=seq, created_at=created_at, last_activity_at=now)
        session.organization = organization
        if end_user is not None and end_user.pk == end_user_id:
            session.end_user = end_user
        history = [tuple(pair) for pair in json.loads(history_json)] if history_json else []
        if snap_seq is None or snap_seq + 1 != seq:
            # Another turn was stored between this statement's snapshot and its lock: the
            # predecessor count and history may miss it. The caller checks again.
            pending, history = None, None
    session._state.adding = False
    session._state.db = "default"
    turn = Turn(id=turn_id, session=session, seq=seq, author_id=params["end_user"] or session.end_user_id,
                user_text=text, client_message_id=client_message_id, idempotency_key=params["key"],
                status=Turn.Status.STREAMING, created_at=now, started_at=now, updated_at=now)
    turn._state.adding = False
    turn._state.db = "default"
    transaction.on_commit(lambda: signals.turn_stored.send(sender=Turn, turn=turn))
    return StoredTurn(turn, True, claimed=True, pending=pending, history=history), None


def turn_finish_fast(turn_id, *, loaded: Turn | None = None, **fields) -> Turn:
    """A turn's final state and its session's last_activity_at in one statement (PostgreSQL);
    turn_finished is sent on commit, as runtime.services._turn_finish does."""
    now = timezone.now()
    fields.setdefault("completed_at", now)
    sets, params = [], []
    for name, value in fields.items():
        column, db_value = _prep(Turn, name, value)
        sets.append(f'"{column}" = %s')
        params.append(db_value)
    sql = (f"WITH t AS (UPDATE {TURNS} SET {', '.join(sets)} WHERE id = %s RETURNING session_id) "
           f"UPDATE {SESSIONS} SET last_activity_at = %s WHERE id = (SELECT session_id FROM t)")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, turn_id, now])
    if loaded is None:
        turn = Turn.objects.select_related("session").get(pk=turn_id)
    else:
        turn = loaded
        for name, value in fields.items():
            setattr(turn, name, value)
    transaction.on_commit(lambda: signals.turn_finished.send(sender=Turn, turn=turn))
    return turn
