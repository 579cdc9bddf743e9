from __future__ import annotations

from pathlib import Path

import pytest

from recorder.config import (
    DEFAULT_BOT_UID,
    DEFAULT_SPEECH_MODEL,
    default_database_url,
    load_config,
    mask_url,
    normalize_database_url,
)
from recorder.errors import ConfigError

SECRET = "sk-very-secret-value-123"


@pytest.fixture
def no_dotenv(tmp_path: Path) -> Path:
    return tmp_path / "absent.env"


def test_defaults(no_dotenv: Path) -> None:
    config = load_config({}, dotenv_path=no_dotenv)
    assert config.bot_uid == DEFAULT_BOT_UID == 9999
    assert config.speech_model == DEFAULT_SPEECH_MODEL == "u3-rt-pro"
    assert config.database_url == default_database_url()
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.is_default_database
    assert config.streaming_url == "wss://streaming.assemblyai.com/v3/ws"


def test_precedence_flag_over_env_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("AGORA_CHANNEL=from-dotenv\nAGORA_BOT_UID=7\nASSEMBLYAI_API_KEY=dk\n")
    assert load_config({}, dotenv_path=dotenv).channel == "from-dotenv"
    assert load_config({}, dotenv_path=dotenv).assemblyai_api_key == "dk"
    env = {"AGORA_CHANNEL": "from-env"}
    assert load_config(env, dotenv_path=dotenv).channel == "from-env"
    assert load_config(env, dotenv_path=dotenv).bot_uid == 7
    assert load_config(env, dotenv_path=dotenv, channel="from-flag").channel == "from-flag"
    # None means "flag not given".
    assert load_config(env, dotenv_path=dotenv, channel=None).channel == "from-env"


def test_certificate_alias(no_dotenv: Path) -> None:
    config = load_config({"AGORA_APP_CERT": SECRET}, dotenv_path=no_dotenv)
    assert config.agora_app_certificate == SECRET
    both = {"AGORA_APP_CERT": "old", "AGORA_APP_CERTIFICATE": "new"}
    assert load_config(both, dotenv_path=no_dotenv).agora_app_certificate == "new"


def test_secrets_hidden_from_repr(no_dotenv: Path) -> None:
    env = {
        "ASSEMBLYAI_API_KEY": SECRET,
        "AGORA_APP_CERTIFICATE": SECRET + "c",
        "AGORA_TOKEN": SECRET + "t",
        "AGORA_APP_ID": "0123456789abcdef0123456789abcdef",
    }
    config = load_config(env, dotenv_path=no_dotenv)
    assert SECRET not in repr(config)
    assert "0123456789abcdef" not in repr(config)
    assert config.require_api_key() == SECRET


def test_missing_api_key_is_actionable(no_dotenv: Path) -> None:
    with pytest.raises(ConfigError, match="ASSEMBLYAI_API_KEY is not set"):
        load_config({}, dotenv_path=no_dotenv).require_api_key()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGORA_BOT_UID": "abc"}, "AGORA_BOT_UID must be a whole number"),
        ({"AGORA_BOT_UID": "0"}, "AGORA_BOT_UID must be between 1"),
        ({"AGORA_BOT_UID": str(2**32)}, "AGORA_BOT_UID must be between 1"),
        ({"RECORDER_DATABASE_URL": "not a url"}, "RECORDER_DATABASE_URL: .* is not a database URL"),
        ({"RECORDER_DATABASE_URL": "mysql://x@y/z"}, "unsupported driver 'mysql'"),
        ({"RECORDER_STT_REGION": "mars"}, "RECORDER_STT_REGION must be one of us, eu"),
        ({"RECORDER_STT_URL": "http://x"}, "RECORDER_STT_URL must start with ws://"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str, no_dotenv: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env, dotenv_path=no_dotenv)


def test_flag_errors_name_the_flag(no_dotenv: Path) -> None:
    with pytest.raises(ConfigError, match="--bot-uid must be a whole number"):
        load_config({}, dotenv_path=no_dotenv, bot_uid="x")
    with pytest.raises(ConfigError, match="^--db: "):
        load_config({}, dotenv_path=no_dotenv, database_url="nonsense")


def test_database_url_normalised_to_async_driver(no_dotenv: Path) -> None:
    sqlite = load_config({"RECORDER_DATABASE_URL": "sqlite:///x.db"}, dotenv_path=no_dotenv)
    assert sqlite.database_url == "sqlite+aiosqlite:///x.db"
    pg = load_config({"RECORDER_DATABASE_URL": "postgresql://u:pw@h/db"}, dotenv_path=no_dotenv)
    assert pg.database_url == "postgresql+asyncpg://u:pw@h/db"
    assert not pg.is_default_database


def test_password_never_in_database_error(no_dotenv: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"RECORDER_DATABASE_URL": "mysql://u:hunter2@h/db"}, dotenv_path=no_dotenv)
    assert "hunter2" not in str(info.value)


def test_mask_url() -> None:
    assert mask_url("postgresql+asyncpg://u:pw@h:5432/db") == "postgresql+asyncpg://u:***@h:5432/db"
    assert mask_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"


def test_eu_region(no_dotenv: Path) -> None:
    config = load_config({"RECORDER_STT_REGION": "EU"}, dotenv_path=no_dotenv)
    assert config.streaming_url == "wss://streaming.eu.assemblyai.com/v3/ws"
    assert load_config(
        {}, dotenv_path=no_dotenv, stt_url="ws://127.0.0.1:1/v3/ws"
    ).streaming_url == ("ws://127.0.0.1:1/v3/ws")


# URLs that exercise every part of the grammar: quoting, IPv6, ports, repeated query
# keys, SQLite URI and memory forms, and things that are not URLs at all.
AGREEMENT_URLS = [
    "sqlite:///x.db",
    "sqlite://",
    "sqlite:///",
    "sqlite:///:memory:",
    "sqlite+pysqlite:////abs/path/r.db",
    "sqlite+aiosqlite:///file:r.db?mode=ro&uri=true",
    "postgres://u@h/db",
    "postgresql://u:pw@h:5432/db",
    "postgresql://u:p%40ss%2Fw%3Ard@h/db",
    "postgresql://us%20er:a b+c@h/db",
    "postgresql+psycopg2://u:pw@[::1]:05432/db?search_path=rec&b=2&a=1&b=1",
    "postgresql+asyncpg://u:pw@h/db?application_name=rec+corder&x=%C3%A9",
    "postgresql://h:/db",
    "postgresql://u:pw@h:abc/db",
    "mysql://x@y/z",
    "mysql://u:hunter2@h/db",
    "not a url",
    "nonsense",
    "garbage://a:pw@ b c",
    "://x",
]


@pytest.mark.parametrize("url", AGREEMENT_URLS)
def test_database_url_helpers_agree_with_storage(url: str) -> None:
    # config parses URLs without SQLAlchemy; storage parses them with it.
    from storage.db import normalize_url
    from storage.errors import mask_url as storage_mask_url

    assert mask_url(url) == storage_mask_url(url)
    try:
        expected = normalize_url(url).render_as_string(hide_password=False)
    except ConfigError as exc:
        with pytest.raises(ConfigError) as info:
            normalize_database_url(url)
        assert str(info.value) == str(exc)
    else:
        assert normalize_database_url(url) == expected


def test_one_emulator_switch_points_the_async_api_there_too(no_dotenv: Path) -> None:
    emulator = {"RECORDER_EMULATOR": "http://127.0.0.1:8765"}
    config = load_config(emulator, dotenv_path=no_dotenv)
    assert config.async_base_url == "http://127.0.0.1:8765"
    assert config.streaming_url == "ws://127.0.0.1:8765/v3/ws"
    flag = load_config({}, dotenv_path=no_dotenv, emulator_url="https://emu.test:9000/")
    assert flag.async_base_url == "https://emu.test:9000"
    assert flag.llm_base_url == "https://emu.test:9000/v1"
    assert flag.streaming_url == "wss://emu.test:9000/v3/ws"
    # An endpoint's own override still wins, from a flag or the environment.
    own = load_config(emulator, dotenv_path=no_dotenv, async_url="http://10.0.0.1:9")
    assert own.async_base_url == "http://10.0.0.1:9"
    env = load_config(
        {**emulator, "RECORDER_ASYNC_URL": "http://10.0.0.2:9"}, dotenv_path=no_dotenv
    )
    assert env.async_base_url == "http://10.0.0.2:9"
    assert load_config({}, dotenv_path=no_dotenv).async_base_url == "https://api.assemblyai.com"
    eu = load_config({"RECORDER_STT_REGION": "eu"}, dotenv_path=no_dotenv)
    assert eu.async_base_url == "https://api.eu.assemblyai.com"
    # The emulator keeps the EU store under /eu, as the real EU host is its own.
    eu_emulated = load_config({**emulator, "RECORDER_STT_REGION": "eu"}, dotenv_path=no_dotenv)
    assert eu_emulated.async_base_url == "http://127.0.0.1:8765/eu"


def test_a_bad_async_url_names_its_source_even_beside_the_emulator(no_dotenv: Path) -> None:
    with pytest.raises(ConfigError, match="RECORDER_ASYNC_URL"):
        load_config(
            {"RECORDER_EMULATOR": "http://127.0.0.1:8765", "RECORDER_ASYNC_URL": "ws://x:1"},
            dotenv_path=no_dotenv,
        )
