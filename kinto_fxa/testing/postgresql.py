"""A throw-away PostgreSQL database, for tests and benchmarks on Kinto's PostgreSQL backends."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy


DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def kinto_url(url: str) -> sqlalchemy.engine.URL:
    """``url`` with Kinto's default driver (psycopg2) when it names none."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


@contextmanager
def temporary_database(admin_url: str = DEFAULT_ADMIN_URL) -> Iterator[str]:
    """Create a fresh database next to ``admin_url``'s, yield its URL, drop it afterwards.

    :raises sqlalchemy.exc.OperationalError: when the server cannot be reached.
    """
    url = kinto_url(admin_url)
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"kinto_fxa_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()
