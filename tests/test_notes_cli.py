"""``recorder notes``, ``ask``, ``show`` and ``demo --notes`` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.emulator.llm import LlmGatewayEmulator
from recorder.emulator.server import serve_emulators
from tests.support.export_data import migrate, store_meeting
from tests.support.notes_meetings import meeting_from_script, short_script
from tests.support.timing import TIMEOUT


class EmulatorThread:
    """``recorder emulate`` in a thread of this process, for CliRunner tests."""

    def __init__(self, llm: LlmGatewayEmulator) -> None:
        self.llm = llm
        self.urls: dict[str, str] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_emulators(api_keys={"good-key"}, llm=self.llm) as server:
            self.urls = dict(server.urls)
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        assert self._ready.wait(TIMEOUT), "the emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(LlmGatewayEmulator(api_keys={"good-key"})) as running:
        yield running


@pytest.fixture
def meeting_db(sqlite_url: str) -> tuple[str, int]:
    from storage.store import TranscriptStore

    migrate(sqlite_url)

    async def store_it() -> int:
        async with await TranscriptStore.open(sqlite_url) as store:
            return await store_meeting(store, meeting_from_script(short_script()))

    return sqlite_url, asyncio.run(store_it())


def _run(*args: str, key: str | None = "good-key") -> object:
    env = {"ASSEMBLYAI_API_KEY": key} if key else {"ASSEMBLYAI_API_KEY": ""}
    return CliRunner().invoke(cli, list(args), env=env)


def test_notes_made_once_then_shown_then_remade(
    emulator: EmulatorThread, meeting_db: tuple[str, int]
) -> None:
    db, meeting_id = meeting_db
    first = _run(
        "notes", str(meeting_id), "--db", db, "--emulator", emulator.urls["emulator"], "--json"
    )
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    data = json.loads(first.output)  # type: ignore[attr-defined]
    assert data["revision"] == 1
    assert [a["owner"] for a in data["action_items"]] == ["Bob", "Chloé", "Dmitri"]
    assert data["usage"]["calls"] == 1 and data["usage"]["price_usd"] > 0
    again = _run("notes", "latest", "--db", db, "--emulator", emulator.urls["emulator"])
    assert again.exit_code == 0  # type: ignore[attr-defined]
    assert "Notes (revision 1" in again.output  # type: ignore[attr-defined]
    assert "[ ] Send the updated budget to finance (Bob, due Friday) [00:00:06-00:00:11]" in (
        again.output  # type: ignore[attr-defined]
    )
    assert len(emulator.llm.requests) == 1  # shown from the database, not asked again
    forced = _run(
        "notes", "latest", "--db", db, "--llm-url", emulator.urls["llm"], "--force",
        "--language", "French",
    )  # fmt: skip
    assert forced.exit_code == 0 and "Notes (revision 2" in forced.output  # type: ignore[attr-defined]
    shown = _run("show", "latest", "--db", db)
    assert "Action items:" in shown.output and "Open questions:" in shown.output  # type: ignore[attr-defined]


def test_ask_cites_times_and_admits_ignorance(
    emulator: EmulatorThread, meeting_db: tuple[str, int]
) -> None:
    db, _ = meeting_db
    url = emulator.urls["emulator"]
    found = _run(
        "ask", "latest", "Who sends the updated budget to finance?", "--db", db, "--emulator", url
    )
    assert found.exit_code == 0, found.output  # type: ignore[attr-defined]
    assert "Based on:" in found.output  # type: ignore[attr-defined]
    assert "[00:00:06] Bob: I'll send the updated budget to finance by Friday." in found.output  # type: ignore[attr-defined]
    missing = _run(
        "ask", "latest", "What is the capital of Mongolia?", "--db", db, "--emulator", url, "--json"
    )
    assert json.loads(missing.output)["found"] is False  # type: ignore[attr-defined]


def test_failures_are_one_line(emulator: EmulatorThread, meeting_db: tuple[str, int]) -> None:
    db, _ = meeting_db
    url = emulator.urls["emulator"]
    bad_key = _run("notes", "latest", "--db", db, "--emulator", url, key="bad-key")
    assert bad_key.exit_code == 1  # type: ignore[attr-defined]
    assert bad_key.output.startswith("error: the LLM Gateway rejected the API key (HTTP 401")  # type: ignore[attr-defined]
    assert bad_key.output.count("\n") == 1 and "bad-key" not in bad_key.output  # type: ignore[attr-defined]
    model = _run("notes", "latest", "--db", db, "--emulator", url, "--model", "gpt-99")
    assert model.exit_code == 1 and "pick another with --model" in model.output  # type: ignore[attr-defined]
    no_key = _run("notes", "latest", "--db", db, key=None)
    assert no_key.exit_code == 1 and "ASSEMBLYAI_API_KEY is not set" in no_key.output  # type: ignore[attr-defined]
    usage = _run("notes", "--db", db)
    assert usage.exit_code == 2 and "--pending" in usage.output  # type: ignore[attr-defined]
    nothing = _run("notes", "--pending", "--db", db, "--emulator", url)
    assert nothing.exit_code == 0 and "no meetings are waiting" in nothing.output  # type: ignore[attr-defined]


def test_help_has_examples() -> None:
    for command in ("notes", "ask"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output
    emulate = CliRunner().invoke(cli, ["emulate", "--help"])
    assert "RECORDER_EMULATOR" in emulate.output


@pytest.mark.slow
async def test_demo_notes_end_to_end(tmp_path: Path, sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env.pop("PYTHONASYNCIODEBUG", None)
    migrate_task = asyncio.to_thread(migrate, sqlite_url)
    await migrate_task
    output = tmp_path / "demo.html"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder", "demo", "--notes", "--speed", "10", "-q",
        "--db", sqlite_url, "-o", str(output),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert "notes: " in err.decode() and "action items" in err.decode()
    page = output.read_text(encoding="utf-8")  # noqa: ASYNC240 - the process has exited
    assert 'class="written-notes"' in page
    assert "Review the search patch" in page


async def test_emulate_prints_the_one_switch_and_serves_the_gateway_with_a_fault() -> None:
    import re
    import signal

    import httpx

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder", "emulate", "--port", "0", "--llm-fault", "503",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        switch = None
        async with asyncio.timeout(TIMEOUT * 2):
            while switch is None:
                line = (await process.stdout.readline()).decode()
                assert line, "emulate exited"
                switch = re.fullmatch(r"export RECORDER_EMULATOR=(http://127\.0\.0\.1:\d+)\n", line)
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.post(
                switch.group(1) + "/v1/chat/completions",
                json={"model": "gpt-5", "prompt": "hi"},
                headers={"Authorization": "any-key"},
            )
        assert response.status_code == 503
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            _, stderr = await process.communicate()
    assert process.returncode == 0 and "Traceback" not in stderr.decode()
    assert "llm gpt-5 text: 503" in stderr.decode() and "any-key" not in stderr.decode()


JOIN_SCRIPT = {
    "channel": "notes-join",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.2, "uid": 1, "say": "I will send the slides."},
        {"at": 2.0, "uid": 2, "say": "Thanks Ann."},
    ],
    "end": 4.0,
}


async def _recorder(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="good-key", XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("PYTHONASYNCIODEBUG", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder", *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


@pytest.mark.slow
async def test_join_notes_failure_keeps_the_recording_and_pending_recovers(
    tmp_path: Path, sqlite_url: str
) -> None:
    from recorder.emulator.llm import LlmBehaviour
    from storage.notes import NotesStore
    from storage.store import TranscriptStore

    await asyncio.to_thread(migrate, sqlite_url)
    script = tmp_path / "meeting.json"
    script.write_text(json.dumps(JOIN_SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    llm = LlmGatewayEmulator(api_keys={"good-key"}, behaviour=LlmBehaviour(fault="503"))
    async with serve_emulators(api_keys={"good-key"}, llm=llm) as server:
        code, output = await _recorder(
            tmp_path, "join", f"--transport=replay:{script}", "--emulator",
            server.urls["emulator"], "--notes", "-q", f"--db={sqlite_url}",
        )  # fmt: skip
        assert code == 0, output
        assert "warning: notes were not made" in output and "HTTP 503" in output
        assert "recorder notes --pending" in output and "Traceback" not in output
        async with await TranscriptStore.open(sqlite_url) as store:
            (summary,) = await store.list_meetings()
            assert summary.status == "completed"
            assert [p.meeting_id for p in await NotesStore(store).pending()] == [summary.id]
        llm.behaviour = LlmBehaviour()
        code, output = await _recorder(
            tmp_path, "notes", "--pending", "--emulator", server.urls["emulator"],
            f"--db={sqlite_url}",
        )  # fmt: skip
        assert code == 0, output
        assert f"meeting {summary.id}: notes made (revision 1)" in output
        async with await TranscriptStore.open(sqlite_url) as store:
            notes = await NotesStore(store).current(summary.id)
            assert await NotesStore(store).pending() == []
    assert notes is not None
    [action] = notes.content.action_items
    assert (action.text, action.owner) == ("Send the slides", "Ann")
