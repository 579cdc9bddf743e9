"""``recorder doctor``: one line per check, secrets never shown, non-zero when a run would fail."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fake_agora import installed_fake_agora

from recorder.cli import cli
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.transport.agora.token import build_rtc_token
from storage.db import upgrade_database

APP_ID = "0123456789abcdef0123456789abcdef"
CERTIFICATE = "fedcba9876543210fedcba9876543210"
API_KEY = "aai-secret-key-1234"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    with installed_fake_agora(tmp_path) as world:
        yield world


@pytest.fixture(autouse=True)
def no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env is read


def doctor(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, ["doctor", *args], env=env)


def lines(result: Result) -> dict[str, str]:
    """Check name -> 'status detail' for every line of the report."""
    found = {}
    for line in result.stdout.splitlines():
        status, rest = line[:4].strip(), line[6:]
        name, _, detail = rest.partition("  ")
        found[name.strip()] = f"{status} {detail.strip()}"
    return found


@pytest.fixture
def migrated_db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ready.db'}"
    asyncio.run(upgrade_database(url))
    return url


def test_nothing_set_up_fails_and_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    result = doctor("--db", url)
    assert result.exit_code == 1
    report = lines(result)
    assert report["python"].startswith("ok python 3.")
    assert report["agora sdk"].startswith("FAIL") and "pip install" in report["agora sdk"]
    assert report["agora app id"].startswith("FAIL AGORA_APP_ID is not set")
    assert report["assemblyai key"].startswith("FAIL ASSEMBLYAI_API_KEY is not set")
    assert report["database"].startswith("FAIL") and "recorder db upgrade" in report["database"]
    assert "4 checks failed" in result.stderr
    assert len(result.stdout.splitlines()) == 9  # one screen: one line per check


def test_ready_machine_passes_without_showing_secrets(world: Any, migrated_db: str) -> None:
    result = doctor(
        "--db",
        migrated_db,
        ASSEMBLYAI_API_KEY=API_KEY,
        AGORA_APP_ID=APP_ID,
        AGORA_APP_CERTIFICATE=CERTIFICATE,
        AGORA_CHANNEL="standup",
    )
    assert result.exit_code == 0, result.output
    report = lines(result)
    assert all(value.startswith("ok") for value in report.values()), report
    assert "uid 9999" in report["agora token"]
    assert "revision" in report["database"]
    assert "ready to record" in result.stderr
    for secret in (API_KEY, CERTIFICATE, APP_ID):
        assert secret not in result.output


@pytest.mark.parametrize(
    ("env", "name", "expected"),
    [
        ({"AGORA_APP_ID": "xyz"}, "agora app id", "FAIL AGORA_APP_ID must be 32 hexadecimal"),
        ({"AGORA_APP_CERTIFICATE": "short"}, "agora certificate", "FAIL AGORA_APP_CERTIFICATE"),
        ({"AGORA_CHANNEL": "a/b"}, "agora channel", "FAIL channel name 'a/b'"),
        ({"AGORA_TOKEN": "006abc"}, "agora token", "warn AGORA_TOKEN is not an AccessToken2"),
        ({"AGORA_TOKEN": "007garbage"}, "agora token", "FAIL AGORA_TOKEN cannot be decoded"),
    ],
)
def test_each_problem_is_one_line(env: dict[str, str], name: str, expected: str) -> None:
    result = doctor(**{"AGORA_APP_ID": APP_ID, **env})
    assert lines(result)[name].startswith(expected), lines(result)[name]
    for value in env.values():
        if len(value) > 6:
            assert value not in result.output


def test_malformed_settings_are_one_line_too() -> None:
    result = doctor(AGORA_BOT_UID="abc")
    assert result.exit_code == 1
    report = lines(result)
    assert report["settings"] == "FAIL AGORA_BOT_UID must be a whole number, got 'abc'"
    assert report["python"].startswith("ok")


def test_prebuilt_token_is_checked_against_channel_uid_and_expiry() -> None:
    now = int(time.time())
    good = build_rtc_token(APP_ID, CERTIFICATE, "standup", 9999, expire_s=600, issue_ts=now)
    other = build_rtc_token(APP_ID, CERTIFICATE, "other", 42, expire_s=600, issue_ts=now)
    stale = build_rtc_token(APP_ID, CERTIFICATE, "standup", 0, expire_s=60, issue_ts=now - 120)
    env = {"AGORA_APP_ID": APP_ID, "AGORA_CHANNEL": "standup"}
    assert lines(doctor(**env, AGORA_TOKEN=good))["agora token"].startswith("ok AGORA_TOKEN fits")
    mismatch = lines(doctor(**env, AGORA_TOKEN=other))["agora token"]
    assert "channel 'other'" in mismatch and "uid 42" in mismatch and mismatch.startswith("FAIL")
    assert lines(doctor(**env, AGORA_TOKEN=stale))["agora token"].startswith(
        "FAIL AGORA_TOKEN has expired"
    )
    assert lines(doctor(**env, AGORA_TOKEN=good))["agora certificate"].startswith("warn")


async def test_online_check_opens_and_closes_one_session(migrated_db: str) -> None:
    emulator = StreamingEmulator(api_keys={API_KEY})
    async with emulator.serve() as server:
        good = await asyncio.to_thread(
            doctor,
            "--online",
            "--db",
            migrated_db,
            "--stt-url",
            server.url,
            ASSEMBLYAI_API_KEY=API_KEY,
        )
        bad = await asyncio.to_thread(
            doctor, "--online", "--stt-url", server.url, ASSEMBLYAI_API_KEY="wrong-key-5678"
        )
    line = lines(good)["streaming"]
    assert line.startswith("ok session") and "s billed" in line
    assert emulator.sessions[0].close_code == 1000  # Terminate, then a normal close
    assert lines(bad)["streaming"].startswith("FAIL") and bad.exit_code == 1
    assert API_KEY not in good.output and "wrong-key-5678" not in bad.output


def test_doctor_is_listed_in_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "doctor" in result.output


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (None, ["ok import would load it", "libagora_rtc_sdk.so"]),
        (
            "newline",
            ["FAIL import would delete the native library and try to download it", "printf"],
        ),
        ("older", ["FAIL import would delete", "not the URL this SDK expects"]),
        ("aosl", ["FAIL import would fail", "libaosl.so is not a shared library"]),
        ("library", ["FAIL import would exit the process", "sys.exit(1)"]),
    ],
)
def test_agora_line_says_what_the_real_import_would_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str | None, expected: list[str]
) -> None:
    from agora_standin.plugin import build_site
    from fake_agora import purge_agora_modules

    site = build_site(tmp_path / "site")
    sdk_dir = site.package / "agora_sdk"
    if damage == "newline":
        (site.package / "version.txt").write_text(site.url + "\n")
    elif damage == "older":
        (site.package / "version.txt").write_text(site.url.replace("174", "150"))
    elif damage == "aosl":
        (sdk_dir / "libaosl.so").write_bytes(b"")
    elif damage == "library":
        (sdk_dir / "libagora_rtc_sdk.so").write_bytes(b"<html>not found</html>")
    purge_agora_modules()
    monkeypatch.syspath_prepend(str(site.root))
    try:
        line = lines(doctor())["agora sdk"]
    finally:
        purge_agora_modules()
    for words in expected:
        assert words in line, line
    assert "agora" not in sys.modules  # judged without importing it
    assert (sdk_dir / "libagora_rtc_sdk.so").exists()
