"""`recorder join` as a user runs it: a real process, real signals, the emulator on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.emulator.streaming.server import StreamingEmulator
from storage.db import upgrade_database
from storage.store import TranscriptStore

SCRIPT = {
    "channel": "signals",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.2, "uid": 1, "say": "First sentence here."},
        {"at": 1.0, "uid": 2, "say": "Second sentence here."},
        {"at": 2.5, "uid": 1, "say": "Third sentence here."},
        {"at": 30.0, "uid": 2, "say": "Never reached."},
    ],
    "end": 40.0,
}


_script_numbers = itertools.count()


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECORDER_", "ASSEMBLYAI", "AGORA"))
    }
    env["ASSEMBLYAI_API_KEY"] = "test-key"
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


async def start_join(
    tmp_path: Path, url: str, db_url: str, script: dict
) -> asyncio.subprocess.Process:
    path = tmp_path / f"meeting-{next(_script_numbers)}.json"
    path.write_text(json.dumps(script))  # noqa: ASYNC240 - a few bytes, before the run starts
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "join",
        f"--transport=replay:{path}",
        f"--stt-url={url}",
        f"--db={db_url}",
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_turns(process: asyncio.subprocess.Process, count: int) -> list[str]:
    assert process.stdout is not None
    lines = []
    while len(lines) < count:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, "recorder exited early"
        lines.append(line.decode().strip())
    return lines


@pytest.mark.slow
async def test_sigterm_stops_cleanly_and_keeps_every_turn(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    async with StreamingEmulator().serve() as server:
        process = await start_join(tmp_path, server.url, db_url, SCRIPT)
        printed = await read_turns(process, 2)
        process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        start = loop.time()
        rest, err = await asyncio.wait_for(process.communicate(), 10)
        assert loop.time() - start < 5
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert "billed" in err.decode() and "recorder export" in err.decode()
    printed += [line for line in rest.decode().splitlines() if line.startswith("[")]
    async with await TranscriptStore.open(db_url) as store:
        (summary,) = await store.list_meetings()
        meeting = await store.get_meeting(summary.id)
    assert summary.status == "completed"
    stored = [f"{t.speaker} ({t.uid}): {t.text}" for t in meeting.turns]
    assert len(stored) >= 2
    for line in printed:  # every turn shown live was stored
        assert line.split("] ", 1)[1] in stored
    assert "Never reached." not in " ".join(stored)


@pytest.mark.slow
async def test_sigkill_then_restart_marks_interrupted_and_loses_nothing(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    async with StreamingEmulator().serve() as server:
        process = await start_join(tmp_path, server.url, db_url, SCRIPT)
        printed = await read_turns(process, 2)
        await asyncio.sleep(1.5)  # past the writer's batching delay: these turns are committed
        process.kill()
        await process.wait()
        async with await TranscriptStore.open(db_url) as store:
            (before,) = await store.list_meetings()
            # Its recorder is dead: every reader says so at once, before any restart.
            assert before.status == "interrupted"
        short = {**SCRIPT, "events": SCRIPT["events"][:1], "end": 0.5}
        second = await start_join(tmp_path, server.url, db_url, short)
        await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 0
    async with await TranscriptStore.open(db_url) as store:
        meetings = {m.id: m for m in await store.list_meetings()}
        killed = await store.get_meeting(before.id)
    assert meetings[before.id].status == "interrupted"
    stored = [f"{t.speaker} ({t.uid}): {t.text}" for t in killed.turns]
    for line in printed:
        assert line.split("] ", 1)[1] in stored


def run_cli(tmp_path: Path, *args: str, key: bool = True) -> tuple[int, str]:
    env = {"ASSEMBLYAI_API_KEY": "k"} if key else {}
    result = CliRunner().invoke(cli, list(args), env={**env, "XDG_DATA_HOME": str(tmp_path)})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            None,
            ["join", "--transport", "replay:missing.json"],
            "replay file 'missing.json' does not exist",
        ),
        ("{oops", ["join", "--transport", "replay:bad.json"], "is not valid JSON"),
        (
            {"channel": "c", "events": [{"at": 0, "uid": 1, "wav": "nope.wav"}]},
            ["join", "--transport", "replay:bad.json"],
            "does not exist",
        ),
        (None, ["join", "--channel", "c", "--transport", "carrier-pigeon"], "unknown transport"),
        (None, ["join", "--transport", "replay"], "needs a file"),
        (None, ["join"], "no channel given"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: object, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "bad.json").write_text(setup if isinstance(setup, str) else json.dumps(setup))
    code, output = run_cli(tmp_path, *args)
    assert code != 0
    assert message in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_missing_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("ASSEMBLYAI_API_KEY",):
        monkeypatch.delenv(name, raising=False)
    code, output = run_cli(tmp_path, "join", "--channel", "c", key=False)
    assert code == 1
    assert "ASSEMBLYAI_API_KEY is not set" in output
    assert len(output.strip().splitlines()) == 1


def test_bad_key_is_refused_once_with_a_clear_message(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
        await upgrade_database(db_url)
        async with StreamingEmulator(api_keys={"the-right-key"}).serve() as server:
            process = await start_join(tmp_path, server.url, db_url, SCRIPT)
            _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, err.decode()

    code, err = asyncio.run(main())
    assert code == 1
    assert "ASSEMBLYAI_API_KEY" in err
    assert "Traceback" not in err
    assert "test-key" not in err


@pytest.mark.slow
async def test_no_secret_in_debug_logs(tmp_path: Path) -> None:
    secret = "sk-secret-1234567890abcdef"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    path = tmp_path / "short.json"
    path.write_text(json.dumps({**SCRIPT, "events": SCRIPT["events"][:3], "end": 2.5}))
    env = {**clean_env(tmp_path), "ASSEMBLYAI_API_KEY": secret}
    async with StreamingEmulator(api_keys={secret}).serve() as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "-vv",
            "join",
            f"--transport=replay:{path}",
            f"--stt-url={server.url}",
            f"--db={db_url}",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    logs = err.decode()
    assert "DEBUG" in logs and "Authorization" in logs  # the handshake was logged, redacted
    assert secret not in logs and secret not in out.decode()
    assert secret[-8:] not in logs


@pytest.mark.parametrize(
    "names_file",
    ['{"1": "Annika", "2": "Benedikt"}', "1=Annika\n2 = Benedikt\n"],
    ids=["json", "lines"],
)
def test_speaker_names_and_duration(tmp_path: Path, names_file: str) -> None:
    async def main() -> tuple[int, str, str]:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
        await upgrade_database(db_url)
        (tmp_path / "names.txt").write_text(names_file)
        path = tmp_path / "long.json"
        path.write_text(json.dumps(SCRIPT))  # 40 s long; --duration stops it after 4 s
        async with StreamingEmulator().serve() as server:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "recorder",
                "join",
                f"--transport=replay:{path}",
                f"--stt-url={server.url}",
                f"--db={db_url}",
                "--duration=4",
                f"--speaker-names={tmp_path / 'names.txt'}",
                cwd=tmp_path,
                env=clean_env(tmp_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 30)
        async with await TranscriptStore.open(db_url) as store:
            (summary,) = await store.list_meetings()
            meeting = await store.get_meeting(summary.id)
        names = sorted(p.display_name or "" for p in meeting.participants)
        return process.returncode or 0, out.decode(), ",".join(names)

    code, out, names = asyncio.run(main())
    assert code == 0
    assert names == "Annika,Benedikt"  # the file wins over the script's names
    assert "Annika (1): First sentence here." in out
    assert "Never reached" not in out


def test_bad_speaker_names_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "names.txt").write_text("alice=101\n")
    code, output = run_cli(tmp_path, "join", "--channel", "c", "--speaker-names", "names.txt")
    assert code == 1
    assert "'alice' is not a uid" in output


@pytest.mark.slow
def test_the_summary_says_what_streaming_cost(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
        await upgrade_database(db_url)
        path = tmp_path / "meeting.json"
        path.write_text(json.dumps(SCRIPT))
        (tmp_path / ".env").write_text("RECORDER_PRICE_PER_HOUR=0.6\n")
        async with StreamingEmulator().serve() as server:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "recorder",
                "join",
                f"--transport=replay:{path}",
                f"--stt-url={server.url}",
                f"--db={db_url}",
                "--duration=6",
                "--sessions-per-minute=100",
                cwd=tmp_path,
                env=clean_env(tmp_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode or 0, err.decode()

    code, err = asyncio.run(main())
    assert code == 0, err
    [line] = [line for line in err.splitlines() if line.startswith("cost: ")]
    found = re.fullmatch(
        r"cost: ([\d.]+) s billed for ([\d.]+) s of speech \(([\d.]+)x\), "
        r"about \$([\d.]+) at \$0\.6/h; session rate 100/min",
        line,
    )
    assert found, line  # the price came from .env
    billed, speech, ratio, usd = (float(value) for value in found.groups())
    assert billed > 0 and speech > 0
    assert ratio == pytest.approx(billed / speech, abs=0.05)
    assert usd == pytest.approx(billed / 3600 * 0.6, abs=1e-4)
