"""The transcripts' database URL as psycopg wants it, and the refusal of SQLite."""

from __future__ import annotations

from sqlalchemy.engine import URL

from recorder.errors import ConfigError
from storage.db import normalize_url
from storage.errors import mask_url

__all__ = ["FleetDatabase", "fleet_database"]

# Query parameters of a SQLAlchemy/asyncpg URL that libpq spells differently.
_RENAMED = {"ssl": "sslmode"}


class FleetDatabase:
    """Where the fleet's queue lives: the transcripts' PostgreSQL database.

    Attributes:
        url: the SQLAlchemy URL the transcripts are stored through.
        conninfo: the same database as a libpq connection string (psycopg), with
            the URL's ``search_path`` as a session option, so a fleet may live in
            a schema of its own.
        shown: the URL with its password masked, for messages.
    """

    def __init__(self, url: URL, conninfo: str) -> None:
        self.url = url
        self.conninfo = conninfo
        self.shown = mask_url(url)


def fleet_database(url: str | URL, *, what: str = "a recording fleet") -> FleetDatabase:
    """Check that ``url`` can host the fleet and convert it for psycopg.

    Raises:
        ConfigError: the URL is malformed, or names SQLite, which cannot host a
            fleet (one writer at a time and no LISTEN/NOTIFY between machines).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"{what} needs PostgreSQL, and {mask_url(parsed)} is SQLite: workers on "
            "several machines share one queue and take each other's recordings over, "
            "which SQLite (one file, one writer) cannot do; pass --db "
            "postgresql+asyncpg://user@host/db (or set RECORDER_DATABASE_URL) and run "
            "'recorder db upgrade' once"
        )
    try:
        import procrastinate  # noqa: F401 - checked here, used by the commands
        from psycopg.conninfo import make_conninfo
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs psycopg and procrastinate; install them with "
            "pip install 'meeting-recorder[postgres]'"
        ) from exc
    params: dict[str, str | int] = {}
    if parsed.host:
        params["host"] = parsed.host
    if parsed.port:
        params["port"] = parsed.port
    if parsed.username:
        params["user"] = parsed.username
    if parsed.password:
        params["password"] = str(parsed.password)
    if parsed.database:
        params["dbname"] = parsed.database
    for key, value in parsed.query.items():
        text = value if isinstance(value, str) else ",".join(value)
        if key == "search_path":
            params["options"] = f"-c search_path={text}"
        else:
            params[_RENAMED.get(key, key)] = text
    params.setdefault("connect_timeout", 10)
    return FleetDatabase(parsed, make_conninfo("", **params))
