"""Meeting lifecycle edges: stopping while the join hangs, and a join that fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

from recorder.bot import MeetingRecorder, RecorderSettings, stream_factory
from recorder.errors import JoinError
from recorder.transport.base import Transport, TransportSink
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
            url="ws://127.0.0.1:9/v3/ws", api_key="k", speech_model="u3-rt-pro"
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
