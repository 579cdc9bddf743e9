"""Meeting lifecycle: stopping while the join hangs, a join that fails, app.record's wiring."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingContext, MeetingRecorder, RecorderSettings
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.errors import JoinError, RecorderError
from recorder.pipeline import FinalTurn
from recorder.stt.settings import ConnectSettings
from recorder.stt.stream import stream_factory
from recorder.transport.base import Transport, TransportSink
from storage.db import upgrade_database
from storage.store import TranscriptStore


class HangingJoin(Transport):
    """A channel that never answers the join; leaving ends the attempt (as Agora's does)."""

    channel = "never"

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.joining = asyncio.Event()

    async def start(self, sink: TransportSink) -> None:
        self.joining.set()
        await self.left.wait()
        raise JoinError("the join was given up")

    async def wait_finished(self) -> None:
        await asyncio.Event().wait()

    def clock_ms(self) -> float:
        return 0.0

    async def stop(self) -> None:
        self.left.set()


class RefusedJoin(HangingJoin):
    async def start(self, sink: TransportSink) -> None:
        raise JoinError("the token was rejected (reason 8); check AGORA_APP_CERTIFICATE")


def recorder_for(transport: Transport, store: TranscriptStore) -> MeetingRecorder:
    return MeetingRecorder(
        transport=transport,
        store=store,
        open_stream=stream_factory(
            ConnectSettings(url="ws://127.0.0.1:9/v3/ws", api_key="k", speech_model="u3-rt-pro")
        ),
        settings=RecorderSettings(bot_uid=9999),
    )


async def test_stop_during_a_hanging_join_returns_at_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with await TranscriptStore.open(url, auto_migrate=True) as store:
        transport = HangingJoin()
        recorder = recorder_for(transport, store)
        task = asyncio.create_task(recorder.run())
        await transport.joining.wait()
        recorder.request_stop()
        report = await asyncio.wait_for(task, 2)  # not the join timeout
        (meeting,) = await store.list_meetings()
    assert transport.left.is_set()
    assert report.turns == 0
    assert meeting.status == "interrupted"


async def test_a_failed_join_raises_and_keeps_no_completed_meeting(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with await TranscriptStore.open(url, auto_migrate=True) as store:
        recorder = recorder_for(RefusedJoin(), store)
        try:
            await asyncio.wait_for(recorder.run(), 5)
        except JoinError as exc:
            assert "AGORA_APP_CERTIFICATE" in str(exc)
        else:
            raise AssertionError("a refused join must raise")
        (meeting,) = await store.list_meetings()
    assert meeting.status == "interrupted"


class EmptyMeeting(HangingJoin):
    """A channel that joins at once and ends at once, with names it knows."""

    channel = "empty"

    @property
    def names(self) -> Mapping[int, str]:
        return {1: "Ann", 2: "Ben"}

    async def start(self, sink: TransportSink) -> None:
        pass

    async def wait_finished(self) -> None:
        pass


class Observer:
    def __init__(self, name: str, calls: list[tuple[str, object]], *, fails: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fails = fails

    async def started(self, context: MeetingContext) -> None:
        self.calls.append((self.name, context.meeting_id))

    def final_turn(self, turn: FinalTurn) -> None:
        self.calls.append((self.name, turn))

    def speech(self, uid: int) -> None:
        self.calls.append((self.name, uid))

    async def before_end(self) -> None:
        self.calls.append((self.name, "before_end"))

    async def stopped(self) -> None:
        self.calls.append((self.name, "stopped"))
        if self.fails:
            raise RecorderError("this observer could not let go")


def config_for(tmp_path: Path) -> Config:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    return Config(database_url=url, assemblyai_api_key="k", stt_url="ws://127.0.0.1:9/v3/ws")


async def test_record_stops_on_its_event_and_says_when_it_is_ready(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    await upgrade_database(config.database_url)
    transport = HangingJoin()
    stop = asyncio.Event()
    ready: list[bool] = []
    task = asyncio.create_task(
        record(
            config, transport, stop=stop, on_ready=lambda: ready.append(transport.joining.is_set())
        )
    )
    await transport.joining.wait()
    assert ready == [False]  # called before the join started
    stop.set()
    report = await asyncio.wait_for(task, 2)  # not the join timeout
    assert transport.left.is_set() and report.turns == 0
    async with await TranscriptStore.open(config.database_url) as store:  # record opened its own
        (meeting,) = await store.list_meetings()
    assert meeting.status == "interrupted"


async def test_record_tells_every_observer_and_merges_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path)
    calls: list[tuple[str, object]] = []
    console = LiveConsole(quiet=True)
    async with await TranscriptStore.open(config.database_url, auto_migrate=True) as store:
        report = await record(
            config,
            EmptyMeeting(),
            options=RecordingOptions(names={2: "Benedikt"}),
            observers=[Observer("a", calls, fails=True), Observer("b", calls)],
            console=console,
            store=store,
        )
        stored = await store.get_meeting(report.meeting_id)
    assert calls == [
        ("a", report.meeting_id),
        ("b", report.meeting_id),
        ("a", "before_end"),
        ("b", "before_end"),
        ("a", "stopped"),
        ("b", "stopped"),  # released although "a" raised
    ]
    assert "this observer could not let go" in caplog.text
    assert stored.summary.status == "completed"
    assert (console.label(1), console.label(2)) == ("Ann (1)", "Benedikt (2)")


async def test_record_needs_an_api_key(tmp_path: Path) -> None:
    config = Config(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(RecorderError, match="ASSEMBLYAI_API_KEY is not set"):
        await record(config, EmptyMeeting())
