"""Hot statements: Core statements compiled once per database and run on the driver's cursor.

The round paths (record a round, list a session's or a call's rounds) run a handful of small
indexed statements per request. Through ``Connection.execute`` each costs SQLAlchemy's
execution machinery (cache key, execution context, result metadata), about 115 µs on this
service's machines against about 12.5 µs for the statement itself in ``sqlite3``
(docs/PERFORMANCE.md). A :class:`HotStatement` keeps the statement written as a Core
construct over the models' tables, compiles it once per dialect, and then executes the
compiled SQL on the DBAPI cursor of the same ``Connection``, applying the same bind and result
processors SQLAlchemy would (so ``Money`` and ``UTCDateTime`` behave exactly as elsewhere).
Errors are raised as SQLAlchemy's ``DBAPIError`` subclasses, as ``Connection.execute`` raises
them, so :class:`~negotiation.db.Database` retries and classifies them the same way.

Only statements with fixed shapes belong here; everything else uses ``Connection.execute``.

A unit of work made of hot statements only runs on a :class:`DriverConnection`: a pooled
DBAPI connection with the engine's dialect and events, and no ``Connection`` around it (the
``*_hot`` modes of :class:`~negotiation.db.Database`). On PostgreSQL SQLAlchemy's asyncio
``Connection`` (checkout, ``run_sync``, transaction bookkeeping) cost more than the statements
of a round listing; on both databases a statement that is not hot fails at once there.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable

_Processor = Callable[[Any], Any]


class DriverConnection:
    """A pooled DBAPI connection with its engine's dialect and events: what a unit of hot
    statements needs of a ``Connection``, without the ``Connection``.

    The caller checks the connection out, ends its transaction (:meth:`commit`, or the pool's
    rollback when it is returned) and returns it; or it wraps the connection of a ``Connection``
    whose transaction the caller ends. Anything but a hot statement on it is a mistake:
    :meth:`execute` says so rather than running it outside SQLAlchemy's execution.
    """

    __slots__ = ("connection", "dialect", "dispatch")

    def __init__(self, connection: PoolProxiedConnection, engine: Engine) -> None:
        self.connection = connection
        self.dialect = engine.dialect
        #: The engine's ``before_cursor_execute`` listeners see these statements too.
        self.dispatch = engine.dispatch

    def execute(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("a hot unit runs HotStatements only (see negotiation.db.statements)")

    def commit(self) -> None:
        """Commit the transaction the first statement began, errors raised as by SQLAlchemy."""
        fairy = self.connection
        try:
            fairy.commit()
        except self.dialect.loaded_dbapi.Error as exc:
            raise _translated(self, "COMMIT", (), exc, None) from exc


Conn = Connection | DriverConnection


def _row_class(keys: list[str]) -> Any:
    """A named tuple with ``_mapping`` too, so code written for SQLAlchemy rows reads it."""
    base: Any = namedtuple("Row", keys)  # type: ignore[misc]
    return type("Row", (base,), {"__slots__": (), "_mapping": property(base._asdict)})


class _Compiled:
    """One statement's SQL and processors for one dialect."""

    __slots__ = (
        "binds",
        "columns",
        "dialect",
        "json",
        "results",
        "returns_rows",
        "row",
        "sql",
        "untyped",
    )

    def __init__(
        self, statement: Any, dialect: Dialect, column_keys: Sequence[str] | None, json: bool
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if (
            not compiled.positional
            or "POSTCOMPILE" in compiled.string
            or compiled.insert_prefetch
            or compiled.update_prefetch
        ):
            # Expanding parameters and Python-side column defaults need SQLAlchemy's execution.
            raise ValueError(f"not a fixed-shape statement for {dialect.name}: {statement}")
        self.dialect = dialect
        self.json = json
        self.sql: str = compiled.string
        #: (name, value when not given, processor): a literal's own value; NULL otherwise.
        self.binds: list[tuple[str, Any, _Processor | None]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            default = None if bind.required else bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self.binds.append((name, default, process))
        self.columns = list(statement.exported_columns)
        self.returns_rows = bool(self.columns)
        self.row: Any = _row_class([c.key for c in self.columns])
        #: Result processors by the cursor's column type codes (PostgreSQL's depend on them).
        self.results: dict[tuple[Any, ...], list[tuple[int, _Processor]]] = {}
        #: The processors when the cursor gives no type codes (SQLite's): the same every time.
        self.untyped: list[tuple[int, _Processor]] | None = None

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, default, process in self.binds:
            value = params.get(name, default)
            values.append(process(value) if process is not None and value is not None else value)
        return tuple(values)

    def processors(self, description: Any) -> list[tuple[int, _Processor]]:
        if self.untyped is not None:
            return self.untyped
        codes = tuple(d[1] for d in description)
        found = self.results.get(codes)
        if found is None:
            found = []
            for index, (column, code) in enumerate(zip(self.columns, codes, strict=True)):
                impl = column.type.dialect_impl(self.dialect)
                as_json = getattr(impl, "json_result_processor", None) if self.json else None
                process = (as_json or impl.result_processor)(self.dialect, code)
                if process is not None:
                    found.append((index, process))
            self.results[codes] = found
            if not any(codes):
                self.untyped = found
        return found


class HotStatement:
    """A Core ``select``/``insert``/``update`` run on the DBAPI cursor of a ``Connection``.

    Parameters are bound by name: ``bindparam`` names, and for an ``insert`` given
    ``column_keys``, the keys of the columns it sets; one not given is NULL. A statement that
    must differ between databases (``ON CONFLICT`` constructs) is given per dialect name. Rows
    come back as named tuples of the statement's columns (with ``_mapping``, like SQLAlchemy's
    rows), with SQLAlchemy's result processing applied. The statement runs in whatever
    transaction the connection is in (none: the driver's autocommit, as in the quick and hot
    read modes).
    ``before_cursor_execute`` listeners on the connection are called (with no execution
    context), so statement logs and the query-plan tests see these statements too.

    With ``json``, for rows that go straight into a JSON response (the round listings), a
    column whose type has a ``json_result_processor`` gets the value the response needs
    through it instead (money as the float of the exact amount, see
    :class:`negotiation.models.Money`): no ``Decimal`` made per amount only to become a
    number again.
    """

    __slots__ = ("_by_dialect", "_column_keys", "_statements", "json")

    def __init__(
        self,
        statement: Executable | None = None,
        *,
        column_keys: Sequence[str] | None = None,
        json: bool = False,
        **per_dialect: Executable,
    ) -> None:
        self.json = json
        self._statements = dict(per_dialect)
        if statement is not None:
            self._statements["*"] = statement
        self._column_keys = column_keys
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            statement = self._statements.get(dialect.name, self._statements.get("*"))
            if statement is None:
                raise ValueError(f"no statement for {dialect.name}")
            compiled = _Compiled(statement, dialect, self._column_keys, self.json)
            self._by_dialect[dialect.name] = compiled
        return compiled

    def all(self, conn: Conn, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row, processed; an empty list for a statement that returns none."""
        compiled = self._compiled(conn.dialect)
        fetched = driver_execute(
            conn, compiled.sql, compiled.arguments(params or {}), fetch=compiled.returns_rows
        )
        if fetched is None:
            return []
        raw, description = fetched
        processors = compiled.processors(description)
        make = compiled.row._make
        if not processors:
            return [make(r) for r in raw]
        rows = []
        for r in raw:
            values = list(r)
            for index, process in processors:
                values[index] = process(values[index])
            rows.append(make(values))
        return rows

    def first(self, conn: Conn, params: Mapping[str, Any] | None = None) -> Any | None:
        """The first row, or None."""
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def run(self, conn: Conn, params: Mapping[str, Any] | None = None) -> None:
        """Execute a statement for its effect."""
        self.all(conn, params)


def driver_execute(
    conn: Conn, sql: str, args: tuple[Any, ...] = (), *, fetch: bool = False
) -> tuple[Sequence[Any], Any] | None:
    """Run ``sql`` on the connection's DBAPI cursor; with ``fetch``, its rows and description.

    A driver error is raised as SQLAlchemy raises it from ``Connection.execute`` (a
    ``DBAPIError`` subclass, marked when the connection is lost), parameters hidden.
    """
    fairy = conn.connection
    cursor = fairy.cursor()
    try:
        if conn.dispatch.before_cursor_execute:
            conn.dispatch.before_cursor_execute(conn, cursor, sql, args, None, False)
        cursor.execute(sql, args)
        return (cursor.fetchall(), cursor.description) if fetch else None
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, sql, args, exc, cursor) from exc
    finally:
        cursor.close()


def _translated(conn: Conn, sql: str, args: tuple[Any, ...], exc: Any, cursor: Any) -> Any:
    """The ``DBAPIError`` subclass SQLAlchemy raises for a driver error, a lost connection
    marked; a :class:`DriverConnection`'s is invalidated at once, so it is not pooled again."""
    fairy = conn.connection
    lost = conn.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
    if lost and isinstance(conn, DriverConnection) and fairy.is_valid:
        fairy.invalidate(exc)
    return DBAPIError.instance(
        sql,
        args,
        exc,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
