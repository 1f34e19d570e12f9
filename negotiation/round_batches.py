"""PostgreSQL: the statements of rounds asked for at the same time, recorded together.

One statement reads every round's context (:data:`ROUND_CONTEXTS`: the single-round
:func:`~negotiation.round_statements.context_query` per round), one records the counters and
rejects of distinct negotiations, each under its own guard (:data:`RECORD_TOGETHER`).
:func:`negotiation.recording.record_together` decides which rounds go together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

from negotiation.booking import CALL_OPEN
from negotiation.db import HotStatement
from negotiation.queries import calls, rounds, sessions
from negotiation.round_profiles import RECORDED_MAX_ROUNDS
from negotiation.round_statements import (
    ONE_MORE_ROUND,
    ROUND_VALUES,
    context_query,
    still_open,
)

_NO_OPTIONS: dict[str, Any] = {}


def _contexts_query(in_session: bool) -> Any:
    """:func:`context_query` for several rounds at once: one row per round asked for whose
    call exists, tagged ``item`` (its position, from 1), as a LATERAL subquery per round.

    The rounds come as arrays ``b_call_ids`` and ``b_session_ids``. In the single-round query
    their ``b_call_id`` and ``b_session_id`` become references to the round's columns, as plain
    text: PostgreSQL resolves them in the subqueries nested at any depth (the load's id, the
    last round), where SQLAlchemy would not correlate them but add ``items`` to their FROM.
    """
    items = (
        func.unnest(
            bindparam("b_call_ids", type_=postgresql.ARRAY(Integer)),
            bindparam("b_session_ids", type_=postgresql.ARRAY(String)),
        )
        .table_valued("call_id", "session_id", with_ordinality="item")
        .render_derived()
        .alias("items")
    )
    item_columns = {"b_call_id": "items.call_id", "b_session_id": "items.session_id"}

    def per_item(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in item_columns:
            return literal_column(item_columns[element.key], element.type)
        return None

    one = replacement_traverse(context_query(in_session), _NO_OPTIONS, per_item)
    context = one.lateral("context")
    return select(items.c.item, context).select_from(items.join(context, true()))


#: PostgreSQL: the contexts of rounds asked for together, in one statement.
ROUND_CONTEXTS = {s: HotStatement(postgresql=_contexts_query(s)) for s in (True, False)}


#: The session values a new session's row is inserted with (negotiation.sessions.new_session).
_NEW_SESSION_KEYS = (
    "session_id",
    "status",
    "ttl_seconds",
    "created_at",
    "last_activity",
    "expires_at",
)
_NEW_SESSION = [c for c in sessions.c if c.key in _NEW_SESSION_KEYS]
#: The values of a round of RECORD_TOGETHER, each bound as an array (``a_<key>``): its
#: position, guard, the guard's parameters, a new session's values, the round's values.
_TOGETHER_VALUES: dict[str, Any] = {
    "item": Integer(),
    "guard": String(),
    "b_now": sessions.c.expires_at.type,
    "b_expires_at": sessions.c.expires_at.type,
    "b_version": String(),
    "b_max_rounds": Integer(),
    **{f"s_{c.key}": c.type for c in _NEW_SESSION},
    **{key: param.type for key, param in ROUND_VALUES.items()},
}

#: The values taken from a round's parameters (after its item and guard).
_GIVEN = list(_TOGETHER_VALUES)[2:]


#: The key spaces of the shared write's advisory locks (``pg_advisory_xact_lock(space, key)``).
SESSION_KEYS, CALL_KEYS = 1, 2


def _in_turn(given: Any) -> Any:
    """How many advisory locks were taken, one for each session (its id's hash) and each call
    of the batch, in one order: sessions, then calls, each by key; held to the end of the
    statement's transaction.

    Within the statement the sessions' rows change in two passes (those still open, then those
    still unseen), so two batches that met on two sessions, one open for one batch and unseen
    for the other, each held one and waited for the other: PostgreSQL ends such a deadlock
    after ``deadlock_timeout`` (1 s), and every round in it waited that long. Waiting here, a
    batch has written nothing. A round recorded alone takes no such lock: it changes one
    session, then one call, in the order the batch does.
    """
    keys = union_all(
        select(
            literal(SESSION_KEYS).label("space"), func.hashtext(given.c.session_id).label("key")
        ).where(given.c.session_id.is_not(None)),
        select(literal(CALL_KEYS), given.c.call_id),
    ).subquery("keys")
    # Sorted in a subquery, locked as its rows come out (a sort in the same SELECT may run after
    # the lock function).
    ordered = select(keys).distinct().order_by(keys.c.space, keys.c.key).subquery("ordered")
    return select(
        func.count(func.pg_advisory_xact_lock(ordered.c.space, ordered.c.key))
    ).scalar_subquery()


def _together_query() -> Any:
    """PostgreSQL, one statement: the rounds of several negotiations (distinct calls and
    sessions), each recorded only if its guard holds, as
    :data:`~negotiation.round_statements.RECORD_IF_UNCHANGED` records one counter or reject; an
    accept, which books a load, is recorded alone.

    The rounds come as arrays, one per value (``a_<name>``), unnested into ``b`` with their
    position (``item``). Each row's guard is its own: ``open`` (its session unchanged since
    read: :func:`~negotiation.round_statements.still_open`), ``unseen`` (its session id still
    unseen, then registered) or ``none`` (a call's own negotiation, guarded by the unique index
    on its round numbers, whose violation fails the whole statement: nothing is written). The
    call is counted (closed on a reject) only for rows whose guard held, and the round inserted
    only for calls still open. Rows come back with their ``item``.

    Before anything is written, ``b`` takes the batch's locks in one order (:func:`_in_turn`).
    """
    given = select(
        func.unnest(
            *(
                bindparam(f"a_{name}", type_=postgresql.ARRAY(type_))
                for name, type_ in _TOGETHER_VALUES.items()
            )
        )
        .table_valued(*_TOGETHER_VALUES)
        .render_derived(with_types=False)
    ).cte("given")
    # Always true: the condition makes ``b`` take the locks before it yields its first row.
    b = select(given).where(_in_turn(given) >= 0).cte("b")
    touched = (
        update(sessions)
        .where(
            b.c.guard == "open",
            sessions.c.session_id == b.c.session_id,
            *still_open(b.c.b_now, b.c.b_version),
        )
        .values(last_activity=b.c.b_now, expires_at=b.c.b_expires_at)
        .returning(b.c.item)
        .cte("touched")
    )
    registered = (
        postgresql.insert(sessions)
        .from_select(
            [c.key for c in _NEW_SESSION],
            select(*(b.c[f"s_{c.key}"] for c in _NEW_SESSION)).where(b.c.guard == "unseen"),
        )
        .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
        .returning(sessions.c.session_id)
        .cte("registered")
    )
    gate = union_all(
        select(touched.c.item),
        select(b.c.item).join(registered, registered.c.session_id == b.c.session_id),
        select(b.c.item).where(b.c.guard == "none"),
    ).cte("gate")
    closed = (
        update(calls)
        .where(calls.c.id == b.c.call_id, CALL_OPEN, b.c.item.in_(select(gate.c.item)))
        .values(
            negotiation_rounds=ONE_MORE_ROUND,
            outcome=case((b.c.decision == "reject", "rejected"), else_=calls.c.outcome),
        )
        .returning(b.c.item)
        .cte("closed")
    )
    recorded = (
        insert(rounds)
        .from_select(
            list(ROUND_VALUES),
            select(*(b.c[key] for key in ROUND_VALUES)).where(b.c.item.in_(select(closed.c.item))),
        )
        .returning(*rounds.c)
        .cte("recorded")
    )
    return select(recorded, b.c.b_max_rounds.label(RECORDED_MAX_ROUNDS.name), b.c.item).join_from(
        recorded, b, b.c.call_id == recorded.c.call_id
    )


#: PostgreSQL: the counters and rejects of several negotiations recorded by one statement.
RECORD_TOGETHER = HotStatement(postgresql=_together_query())


def together_params(rounds_: list[tuple[int, str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """:data:`RECORD_TOGETHER`'s parameters for rounds given as (item, guard, parameters of
    :data:`~negotiation.round_statements.RECORD_IF_UNCHANGED` for that guard): one array per
    value, a parameter not given NULL."""
    rows = [
        (item, guard, *(params.get(name) for name in _GIVEN)) for item, guard, params in rounds_
    ]
    columns = zip(*rows, strict=True)
    return {
        f"a_{name}": list(values) for name, values in zip(_TOGETHER_VALUES, columns, strict=True)
    }
