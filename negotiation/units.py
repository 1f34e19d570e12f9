"""Marks on units of work that tell :class:`~negotiation.db.Database` how to run them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_QUICK = "_negotiation_quick_read"
_HOT = "_negotiation_hot_unit"
_OWN_TRANSACTION = "_negotiation_own_transaction"


def quick_read(fn: F) -> F:
    """Mark a read unit as a few index lookups returning at most one page of rows.

    It runs without BEGIN and COMMIT around it (each statement sees the data committed when it
    starts), and on SQLite on the event loop's thread. Handing it to a worker thread cost
    more than running it: under load the hop and the GIL hand-offs between ten reader threads
    and the loop doubled the CPU time of a session read. A reader in WAL mode never waits for
    writers, so the loop is held only for the unit's own work, most of which holds the GIL
    anyway. Leave unmarked anything that may scan (filters without an index, aggregates,
    reports): it keeps a worker thread, where SQLite's C code runs without the GIL.
    """
    setattr(fn, _QUICK, True)
    return fn


def hot_unit(fn: F) -> F:
    """Mark a unit of work whose statements are all :class:`~negotiation.statements.HotStatement`.

    On PostgreSQL it runs on a :class:`~negotiation.statements.DriverConnection` (a pooled
    asyncpg connection with no SQLAlchemy ``Connection`` around it): the round paths, where
    the asyncio ``Connection``'s own work cost more than the statements. It is then handed no
    ``Connection`` to call ``execute`` on, so a statement that is not hot fails at once, in the
    PostgreSQL tests, rather than running outside the unit's transaction. A read runs without
    a transaction there, as a :func:`quick_read` does (it streams nothing). On SQLite a hot
    write runs on the event loop's thread, between a BEGIN and a COMMIT on the writer thread
    (see :class:`negotiation.group_commit.GroupCommit`); a hot read as any other read.
    """
    setattr(fn, _HOT, True)
    return fn


def own_transaction(fn: F) -> F:
    """Mark a :func:`hot_unit` write that starts outside a transaction on PostgreSQL.

    Each of its statements commits on its own until it calls
    :meth:`~negotiation.statements.DriverConnection.begin`; a transaction it begins is
    committed when it returns. For a write that is one statement when nothing competes with it
    (recording a round) and takes locks in a transaction only when something does. Elsewhere
    (SQLite, or inside another unit's transaction) it runs in that transaction as usual.
    """
    setattr(fn, _OWN_TRANSACTION, True)
    return fn


def _marked(fn: Callable[..., Any], mark: str) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return bool(getattr(fn, mark, False))


def is_quick_read(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` (or the function a ``functools.partial`` wraps) is a quick read."""
    return _marked(fn, _QUICK)


def is_hot(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` (or the function a ``functools.partial`` wraps) is a hot unit."""
    return _marked(fn, _HOT)


def owns_transaction(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` (or the function a ``functools.partial`` wraps) starts outside one."""
    return _marked(fn, _OWN_TRANSACTION)
