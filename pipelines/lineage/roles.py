"""The auditor's read-only role on a PostgreSQL lineage store, with its own credentials.

Called by ``pipelines lineage auditor-role`` (run once by whoever administers the database) and by
tests. The role may log in, read every table of the store (those that exist now and those the
writer creates later) and nothing else: no INSERT, UPDATE, DELETE, TRUNCATE or DDL, and its
sessions are read-only by default. The auditor's tools then connect with
``PIPELINES_LINEAGE_READ_URL=postgresql+psycopg2://<role>:<password>@host/db``, so a lineage
query cannot change the record even if the code asked it to. docker/init-lineage-db.sh creates the
same role in the compose deployment.

SQLite has no roles: there, the auditor reads a copy, or the file with read-only permissions.
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from pipelines.errors import UsageError
from pipelines.lineage.store import Base, LineageError, describe

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def auditor_role_statements(role: str, writer: str) -> list[str]:
    """The SQL that (re)creates ``role`` with SELECT only; ``:password`` is bound by the caller.

    ``writer`` is the role that owns (creates) the store's tables: the default privileges make
    every table it creates later readable by ``role`` too.
    """
    for name in (role, writer):
        if not ROLE_NAME.match(name):
            raise UsageError(f"role name {name!r} must be lower-case letters, digits and _ "
                             f"(at most 63), starting with a letter or _")
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE CREATE ON SCHEMA public FROM {role}",
        f"GRANT CONNECT ON DATABASE \"{{database}}\" TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA public GRANT SELECT ON TABLES "
        f"TO {role}",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
    ]


def create_auditor_role(url: str, role: str, password: str, writer: str | None = None) -> str:
    """Creates (or resets the password of) the read-only ``role`` on the store at ``url``.

    Args:
        url: an administrator's URL of the store (may CREATE ROLE; often the writer's).
        role: the auditor's role name.
        password: its password (never logged).
        writer: the role that owns the tables [default: the user of ``url``].

    Returns:
        The ``PIPELINES_LINEAGE_READ_URL`` to give the auditor, without the password.

    Raises:
        UsageError: not PostgreSQL, or a bad role name or empty password.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise UsageError(f"read-only roles need a PostgreSQL store, not {describe(url)}; on SQLite "
                         f"give the auditor a read-only copy of the file")
    if not password:
        raise UsageError("the auditor's password is empty")
    writer = writer or parsed.username or ""
    statements = auditor_role_statements(role, writer)
    engine = create_engine(url)
    try:
        Base.metadata.create_all(engine)  # the tables the grants cover
        with engine.begin() as conn:
            database = conn.execute(text("SELECT current_database()")).scalar_one()
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                                  {"r": role}).first()
            verb = "ALTER" if exists else "CREATE"
            # psycopg2 binds client-side, so a bound password is quoted safely in DDL too
            conn.execute(text(f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                              f"PASSWORD :password"), {"password": password})
            for stmt in statements:
                conn.execute(text(stmt.replace("{database}", database.replace('"', '""'))))
    except Exception as exc:
        if isinstance(exc, UsageError):
            raise
        raise LineageError(f"could not create the auditor role {role} on {describe(url)}: "
                           f"{exc}") from exc
    finally:
        engine.dispose()
    reader = URL.create(parsed.drivername, username=role, host=parsed.host, port=parsed.port,
                        database=parsed.database, query=parsed.query)  # never the writer's password
    return reader.render_as_string(hide_password=False)
