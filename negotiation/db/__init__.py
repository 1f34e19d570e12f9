"""The database: engines, execution modes, the SQLite writer, hot statements, errors.

Every query and write in the service is a plain function over a synchronous SQLAlchemy Core
``Connection`` (a *unit of work*). :class:`Database` runs one in the mode its call site names:

================  ============================  =====================  =====================
mode              for; what it guarantees       SQLite                 PostgreSQL
================  ============================  =====================  =====================
``read``          any reads (reports, export):  a reader thread, in a  a READ ONLY,
                  one snapshot of the data      transaction            REPEATABLE READ
                                                (WAL snapshot)         transaction
``read_quick``    a few index lookups, a page   the loop's thread, on  autocommit (no
                  at most; each statement sees  the loop's connection  BEGIN or COMMIT
                  what was committed when it                           round trips)
                  started
``read_hot``      as ``read_quick``, hot        a reader thread, on    the pooled driver
                  statements only (may scan)    the driver connection  connection,
                                                                       autocommit
``read_shared``   a listing's page per item,    the loop's thread,     items asked for
                  hot; each as ``read_hot``     one item at a time     together in one
                                                                       statement
``write``         any writes: one transaction,  the writer thread, in  a READ COMMITTED
                  all or nothing, committed     the writer's next      transaction on a
                  (durable) before it returns,  transaction (group     ``Connection``
                  even if its caller is gone    commit)
``write_hot``     as ``write``, hot statements  the loop's thread,     the pooled driver
                  only                          between the writer's   connection; a
                                                BEGIN and COMMIT       ``first_try`` first
``write_shared``  items written together, each  (not used: SQLite's    items asked for
                  by one atomic statement; hot  writer batches         together in one
                  statements only               already)               unit, autocommit
================  ============================  =====================  =====================

A unit in a hot mode gets a :class:`~negotiation.db.statements.DriverConnection`: anything but a
:class:`~negotiation.db.statements.HotStatement` on it fails at once, on both databases. A unit
run by ``read`` cannot write (SQLite ``query_only``, PostgreSQL ``READ ONLY``); the other read
modes must not either (SQLite refuses; PostgreSQL's autocommit does not check). Writes that
read and then decide lock what they read (``FOR UPDATE`` on PostgreSQL; SQLite's writer holds
the database's write lock from its ``BEGIN IMMEDIATE``).

Failures are retried or classified once for every mode (:meth:`Database._run`,
:mod:`negotiation.db.errors`, docs/RELIABILITY.md): ``DatabaseBusy``, ``DatabaseUnavailable``
and ``InvalidData`` are what callers see.
"""

from negotiation.db.database import Database
from negotiation.db.engines import is_sqlite, normalize_url
from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable, InvalidData
from negotiation.db.statements import Conn, DriverConnection, HotStatement

__all__ = [
    "Conn",
    "Database",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "DriverConnection",
    "HotStatement",
    "InvalidData",
    "is_sqlite",
    "normalize_url",
]
