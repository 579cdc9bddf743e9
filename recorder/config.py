"""One frozen settings object, built from flags > environment > ``.env`` > defaults.

:func:`load_config` is the only code in recorder that reads environment
variables. Secrets (API keys, the Agora certificate and tokens) come only from
the environment or ``.env``, never from flags, and are hidden from ``repr``.
A leaf: it imports nothing of ours but :mod:`recorder.errors`, and no database
library, so every command (and ``--help``) can load it cheaply.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from recorder.errors import ConfigError

__all__ = [
    "ASYNC_DRIVERS",
    "DEFAULT_BOT_UID",
    "DEFAULT_EMPTY_TIMEOUT_S",
    "DEFAULT_IDLE_CLOSE_S",
    "DEFAULT_SESSIONS_PER_MINUTE",
    "DEFAULT_SPEECH_MODEL",
    "EMULATOR_PATHS",
    "LLM_REGION_URLS",
    "MAX_UID",
    "SPEECH_MODELS",
    "STT_REGION_URLS",
    "Config",
    "default_database_url",
    "emulator_urls",
    "load_config",
    "mask_url",
    "normalize_database_url",
]

DEFAULT_BOT_UID = 9999
DEFAULT_SPEECH_MODEL = "u3-rt-pro"
# The streaming models the service documents (docs/providers.md, "Streaming: speech models").
SPEECH_MODELS = (
    "u3-rt-pro",
    "u3-pro",
    "universal-3-5-pro",
    "universal-3-6-pro",
    "universal-streaming-english",
    "universal-streaming-multilingual",
)
# Agora uids are unsigned 32-bit; 0 asks the server to assign one, which a bot must not do.
MAX_UID = 2**32 - 1
# Silence after which a socket closes whatever the turns: the whole rule under
# --close-policy idle, the fallback under turn-end (README, "Costs: idle sockets";
# measured with bench/bench_cost.py).
DEFAULT_IDLE_CLOSE_S = 2.0
# Free AssemblyAI accounts may open 5 sessions a minute; paid ones 100+
# (docs/providers.md, "Streaming: limits and billing").
DEFAULT_SESSIONS_PER_MINUTE = 5.0
# A recording ends once its channel has had no remote participant this long.
DEFAULT_EMPTY_TIMEOUT_S = 120.0
# Streaming v3 endpoints per data-residency region
# (https://www.assemblyai.com/docs/streaming/endpoints-and-data-zones).
STT_REGION_URLS = {
    "us": "wss://streaming.assemblyai.com/v3/ws",
    "eu": "wss://streaming.eu.assemblyai.com/v3/ws",
}
# LLM Gateway base URLs per region (docs/providers.md, "LLM Gateway").
LLM_REGION_URLS = {
    "us": "https://llm-gateway.assemblyai.com/v1",
    "eu": "https://llm-gateway.eu.assemblyai.com/v1",
}
# Where each AssemblyAI endpoint lives on one emulator (``recorder emulate``), so one
# ``--emulator URL`` points them all at it; an endpoint's own override still wins.
# The async API's base URL is the host itself (its paths start with /v2).
EMULATOR_PATHS = {"stt_url": "/v3/ws", "agent_url": "/v1/ws", "llm_url": "/v1", "async_url": ""}
# The endpoints spoken over plain HTTP(S); the others are WebSocket URLs.
_HTTP_ENDPOINTS = frozenset({"llm_url", "async_url"})
# Pre-recorded (async) API hosts per region
# (https://www.assemblyai.com/docs/pre-recorded-audio/select-the-region).
ASYNC_REGION_URLS = {
    "us": "https://api.assemblyai.com",
    "eu": "https://api.eu.assemblyai.com",
}
# Settings whose command-line flag is not simply the field name.
_FLAG_NAMES = {"database_url": "--db", "emulator_url": "--emulator"}


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a recorder run needs to know, validated.

    Attributes:
        database_url: SQLAlchemy async URL of the transcript database.
        assemblyai_api_key: streaming STT key (secret).
        agora_app_id: the Agora project's App ID (not secret, but not logged either).
        agora_app_certificate: the Agora App Certificate, to build tokens (secret).
        agora_token: a prebuilt Agora token to use instead of building one (secret).
        channel: the Agora channel to join.
        bot_uid: the uid the bot joins with.
        stt_url: full streaming URL override (an emulator), else from ``stt_region``.
        stt_region: ``us`` or ``eu``.
        speech_model: the streaming speech model.
        agent_url: Voice Agent URL override (an emulator), if any.
        llm_url: LLM Gateway base URL override (an emulator), else from ``stt_region``.
        emulator_url: the one emulator every AssemblyAI endpoint points at, if any
            (``--emulator``/``RECORDER_EMULATOR``; already applied to the URLs here,
            ``async_url`` included).
        price_per_hour: streaming price in USD per hour of socket-open time, to
            estimate what a meeting cost (None: the model's list price,
            ``recorder.stt.price``).
        webhook_key: the server key webhook signing secrets are derived from (secret).
        audio_dir: where participants' audio is kept (None: next to the database).
        is_audio_kept: False (``--no-audio``) keeps no audio, so nothing can be repaired.
        async_url: pre-recorded (async) API base URL override (an emulator), else from
            ``stt_region``.
    """

    database_url: str
    assemblyai_api_key: str | None = field(default=None, repr=False)
    agora_app_id: str | None = field(default=None, repr=False)
    agora_app_certificate: str | None = field(default=None, repr=False)
    agora_token: str | None = field(default=None, repr=False)
    channel: str | None = None
    bot_uid: int = DEFAULT_BOT_UID
    stt_url: str | None = None
    stt_region: str = "us"
    speech_model: str = DEFAULT_SPEECH_MODEL
    agent_url: str | None = None
    llm_url: str | None = None
    emulator_url: str | None = None

    @property
    def llm_base_url(self) -> str:
        """The LLM Gateway base URL (``.../v1``): the override, else the region's."""
        return (self.llm_url or LLM_REGION_URLS[self.stt_region]).rstrip("/")

    price_per_hour: float | None = None
    webhook_key: str | None = field(default=None, repr=False)
    audio_dir: str | None = None
    is_audio_kept: bool = True
    async_url: str | None = None

    @property
    def audio_directory(self) -> Path:
        """Where audio is kept: ``audio_dir``, else an ``audio`` folder next to the database.

        Next to a SQLite file; for a server database, in the user data directory.
        """
        if self.audio_dir:
            return Path(self.audio_dir).expanduser()
        match = re.match(r"sqlite\+\w+:///(?!:memory:)(.+)$", self.database_url)
        if match and not match.group(1).startswith("file:"):
            return Path(match.group(1)).expanduser().parent / "audio"
        from platformdirs import user_data_path

        return user_data_path("recorder", appauthor=False) / "audio"

    @property
    def async_base_url(self) -> str:
        """The pre-recorded (async) API to repair gaps with: the override, else the region's."""
        return (self.async_url or ASYNC_REGION_URLS[self.stt_region]).rstrip("/")

    @property
    def is_default_database(self) -> bool:
        """Whether the database is the per-user SQLite file recorder manages itself."""
        return self.database_url == default_database_url()

    @property
    def streaming_url(self) -> str:
        """The streaming endpoint to connect to: the override, else the region's."""
        return self.stt_url or STT_REGION_URLS[self.stt_region]

    def require_api_key(self) -> str:
        """Return the AssemblyAI key or raise a ConfigError saying how to set it."""
        if not self.assemblyai_api_key:
            raise ConfigError(
                "ASSEMBLYAI_API_KEY is not set; put it in the environment or a .env file "
                "(or run 'recorder demo' to try recorder with no account)"
            )
        return self.assemblyai_api_key


# -- database URLs -------------------------------------------------------------------
# Pure string work, so that loading the settings needs no database library; storage.db
# parses the result again with SQLAlchemy (tests/test_config.py checks the two agree).

# The driver a URL names -> the async driver recorder runs it with; storage.db uses it
# too, for URLs that reach it without passing through here (alembic's -x db=...).
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
# SQLAlchemy's URL grammar (sqlalchemy.engine.url.make_url), so a URL accepted here is
# read the same way when storage opens it.
_DATABASE_URL = re.compile(
    r"""
    (?P<driver>[\w\+]+)://
    (?:
        (?P<username>[^:/]*)
        (?::(?P<password>[^@]*))?
    @)?
    (?:
        (?:
            \[(?P<ipv6host>[^/\?]+)\] |
            (?P<ipv4host>[^/:\?]+)
        )?
        (?::(?P<port>[^/\?]*))?
    )?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)
_URL_EXAMPLES = "sqlite+aiosqlite:///path/recorder.db or postgresql+asyncpg://user@host/db"


@dataclass(frozen=True, slots=True)
class _DatabaseUrl:
    """A parsed database URL (user name and password unquoted), rendered as SQLAlchemy does."""

    driver: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, url: str) -> _DatabaseUrl | None:
        match = _DATABASE_URL.match(url)
        if match is None:
            return None
        parts = match.groupdict()
        try:
            port = None if parts["port"] is None else int(parts["port"])
        except ValueError:
            return None
        query = parse_qsl(parts["query"]) if parts["query"] is not None else []
        return cls(
            driver=parts["driver"],
            username=None if parts["username"] is None else unquote(parts["username"]),
            password=None if parts["password"] is None else unquote(parts["password"]),
            host=parts["ipv4host"] or parts["ipv6host"],
            port=port,
            database=parts["database"],
            # Sorted by key, repeated keys in their given order, as SQLAlchemy renders them.
            query=tuple(sorted(query, key=lambda pair: pair[0])),
        )

    def render(self, *, hide_password: bool) -> str:
        text = f"{self.driver}://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += f"/{self.database}"
        if self.query:
            text += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in self.query)
        return text


def default_database_url() -> str:
    """The default database: a SQLite file in the user data directory.

    ``storage.db.default_database_url`` returns the same (a test checks); storage
    cannot import this module, since imports point from recorder down to storage.
    """
    from platformdirs import user_data_path

    path = user_data_path("recorder", appauthor=False) / "recorder.db"
    return f"sqlite+aiosqlite:///{path}"


def mask_url(url: str) -> str:
    """Render a database URL for display, with the password hidden.

    Unparseable input is shown only up to the scheme, since it may hold a secret.
    """
    parsed = _DatabaseUrl.parse(url)
    if parsed is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://..."
    return parsed.render(hide_password=True)


def normalize_database_url(url: str) -> str:
    """Check a database URL and switch it to its async driver (``sqlite://`` -> aiosqlite).

    Raises:
        ConfigError: the URL is malformed or names an unsupported database.
    """
    parsed = _DatabaseUrl.parse(url)
    if parsed is None:
        raise ConfigError(f"{mask_url(url)!r} is not a database URL; expected e.g. {_URL_EXAMPLES}")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise ConfigError(
            f"the database URL {parsed.render(hide_password=True)} has a port out of range 1-65535"
        )
    driver = ASYNC_DRIVERS.get(parsed.driver)
    if driver is None:
        raise ConfigError(
            f"the database URL {parsed.render(hide_password=True)} uses the unsupported driver "
            f"{parsed.driver!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return dataclasses.replace(parsed, driver=driver).render(hide_password=False)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.__class__.__name__
        raise ConfigError(f"cannot read {path}: {problem}; fix or remove it") from exc
    return {key: value for key, value in values.items() if value is not None}


def _validate_database_url(url: str, source: str) -> str:
    try:
        return normalize_database_url(url)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _shown(value: str) -> str:
    """A value from the user, quoted on one printable line and cut short."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_websocket_url(
    url: str, source: str, path: str, *, schemes: tuple[str, str] = ("ws", "wss")
) -> None:
    """A ws:// or wss:// URL (or ``schemes``) with a host and, if given, a port of 1-65535.

    Raises:
        ConfigError: naming the flag or variable, the value and what is wrong.
    """
    example = f"e.g. {schemes[0]}://127.0.0.1:8765{path}"
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if "@" in authority:
        # Never echoed: it may hold a password, and the URL is printed in every error.
        raise ConfigError(
            f"{source} holds a user name or password (user@host); the API key goes in "
            "ASSEMBLYAI_API_KEY, never in a URL"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        if "IPv6" in str(exc):
            problem = (
                f"a malformed IPv6 host (write it in brackets: {schemes[0]}://[::1]:8765{path})"
            )
        elif "out of range" in str(exc):
            problem = "a port out of range 1-65535"
        else:
            problem = "a port that is not a number"
        raise ConfigError(f"{source}: {_shown(url)} has {problem}; {example}") from None
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{source} must start with {schemes[0]}:// or {schemes[1]}://, got {_shown(url)}"
        )
    if not parts.hostname:
        raise ConfigError(f"{source}: {_shown(url)} has no host; {example}")
    if port == 0:
        raise ConfigError(f"{source}: {_shown(url)} has a port out of range 1-65535; {example}")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigError(f"{source}: {_shown(url)} holds spaces or control characters")


def _parse_uid(value: str, source: str) -> int:
    try:
        uid = int(value)
    except ValueError:
        raise ConfigError(f"{source} must be a whole number, got {value!r}") from None
    if not 0 < uid <= MAX_UID:
        raise ConfigError(f"{source} must be between 1 and {MAX_UID}, got {uid}")
    return uid


def emulator_urls(base: str, source: str = "--emulator") -> dict[str, str]:
    """Every AssemblyAI endpoint on one emulator at ``base`` (``http://HOST:PORT``).

    Returns:
        ``{"stt_url": "ws://HOST:PORT/v3/ws", "agent_url": ..., "llm_url": "http://HOST:PORT/v1",
        "async_url": "http://HOST:PORT"}``.

    Raises:
        ConfigError: ``base`` is not an http(s):// or ws(s):// URL.
    """
    scheme, sep, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("http", "https", "ws", "wss") or not host:
        raise ConfigError(
            f"{source} must be an emulator URL like http://127.0.0.1:8765, got {base!r}"
        )
    secure = scheme in ("https", "wss")
    ws = f"{'wss' if secure else 'ws'}://{host}"
    http = f"{'https' if secure else 'http'}://{host}"
    return {
        name: (http if name in _HTTP_ENDPOINTS else ws) + path
        for name, path in EMULATOR_PATHS.items()
    }


def _parse_price(value: str, source: str) -> float:
    try:
        price = float(value)
    except ValueError:
        price = -1.0
    if not 0 <= price < 1000 or price != price:
        raise ConfigError(f"{source} must be a price in USD per hour, like 0.45; got {value!r}")
    return price


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv_path: Path | None = None,
    **overrides: Any,
) -> Config:
    """Build and validate the settings.

    Args:
        environ: the environment to read (defaults to ``os.environ``; tests pass a dict).
        dotenv_path: the ``.env`` file to read (defaults to ``./.env``); values in the
            environment win over it.
        **overrides: values from command-line flags; ``None`` means "not given".

    Returns:
        The validated settings.

    Raises:
        ConfigError: a value is malformed; the message names the variable or flag.
    """
    env = dict(_read_dotenv(dotenv_path or Path.cwd() / ".env"))
    env.update(os.environ if environ is None else environ)
    flags = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(flags) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")

    def pick(name: str, *variables: str) -> tuple[str | None, str]:
        if name in flags:
            return str(flags[name]), _FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
        for variable in variables:
            if env.get(variable):
                return env[variable], variable
        return None, variables[0] if variables else name

    raw_db, db_source = pick("database_url", "RECORDER_DATABASE_URL")
    database_url = _validate_database_url(raw_db, db_source) if raw_db else default_database_url()
    raw_uid, uid_source = pick("bot_uid", "AGORA_BOT_UID")
    bot_uid = _parse_uid(raw_uid, uid_source) if raw_uid else DEFAULT_BOT_UID
    region, region_source = pick("stt_region", "RECORDER_STT_REGION")
    region = (region or "us").lower()
    if region not in STT_REGION_URLS:
        raise ConfigError(f"{region_source} must be one of us, eu; got {region!r}")
    stt_url, stt_source = pick("stt_url", "RECORDER_STT_URL")
    if stt_url:
        _check_websocket_url(stt_url, stt_source, "/v3/ws")
    agent_url, agent_source = pick("agent_url", "RECORDER_AGENT_URL")
    if agent_url:
        _check_websocket_url(agent_url, agent_source, "/v1/ws")
    speech_model, model_source = pick("speech_model", "RECORDER_SPEECH_MODEL")
    if speech_model is not None and speech_model not in SPEECH_MODELS:
        raise ConfigError(
            f"{model_source}: unknown speech model {_shown(speech_model)}; "
            f"use one of {', '.join(SPEECH_MODELS)}"
        )
    llm_url, llm_source = pick("llm_url", "RECORDER_LLM_URL")
    if llm_url:
        _check_websocket_url(llm_url, llm_source, "/v1", schemes=("http", "https"))
    async_url, async_source = pick("async_url", "RECORDER_ASYNC_URL")
    if async_url:
        _check_websocket_url(async_url, async_source, "", schemes=("http", "https"))
    emulator_url, emulator_source = pick("emulator_url", "RECORDER_EMULATOR")
    if emulator_url:
        _check_websocket_url(emulator_url, emulator_source, "", schemes=("http", "https"))
        derived = emulator_urls(emulator_url, emulator_source)
        stt_url = stt_url or derived["stt_url"]
        agent_url = agent_url or derived["agent_url"]
        llm_url = llm_url or derived["llm_url"]
        # The emulator keeps the EU pre-recorded API's own store under /eu, as the real
        # service keeps api.eu.assemblyai.com apart (recorder/emulator/batch/accounts.py).
        eu = "/eu" if region == "eu" else ""
        async_url = async_url or derived["async_url"] + eu
    audio_dir, _ = pick("audio_dir", "RECORDER_AUDIO_DIR")
    raw_price, price_source = pick("price_per_hour", "RECORDER_PRICE_PER_HOUR")
    price_per_hour = _parse_price(raw_price, price_source) if raw_price else None

    return Config(
        database_url=database_url,
        # Secrets: environment or .env only, never flags (flags show up in ps and shell history).
        assemblyai_api_key=env.get("ASSEMBLYAI_API_KEY") or None,
        agora_app_id=env.get("AGORA_APP_ID") or None,
        agora_app_certificate=(
            env.get("AGORA_APP_CERTIFICATE") or env.get("AGORA_APP_CERT") or None
        ),
        agora_token=env.get("AGORA_TOKEN") or None,
        channel=pick("channel", "AGORA_CHANNEL")[0],
        bot_uid=bot_uid,
        stt_url=stt_url,
        stt_region=region,
        speech_model=speech_model or DEFAULT_SPEECH_MODEL,
        agent_url=agent_url,
        llm_url=llm_url.rstrip("/") if llm_url else None,
        emulator_url=emulator_url,
        audio_dir=audio_dir,
        is_audio_kept=bool(flags.get("is_audio_kept", True)),
        async_url=async_url,
        price_per_hour=price_per_hour,
        webhook_key=_webhook_key(env.get("RECORDER_WEBHOOK_KEY") or None),
    )


def _webhook_key(value: str | None) -> str | None:
    if value is not None and len(value) < 32:
        raise ConfigError(
            "RECORDER_WEBHOOK_KEY is shorter than 32 characters; use a long random value, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value
