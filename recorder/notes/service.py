"""Notes for stored meetings: make and save them, after a recording or on request.

:func:`notes_for_meeting` reads a meeting's turns, asks the gateway and stores a new
revision. :func:`notes_after_recording` is what ``join --notes`` and ``demo --notes``
call when the meeting ends: it marks the meeting *pending* first, so a failure (or a
crash) leaves it for ``recorder notes --pending``, and it never touches the meeting's
own status. :func:`retry_pending` is ``recorder notes --pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from recorder.config import Config
from recorder.errors import RecorderError
from recorder.llm.client import LlmClient, RetryPolicy
from recorder.llm.pricing import DEFAULT_MODEL
from recorder.notes.generate import Answer, NotesRequest, ask, generate_notes
from storage.notes import MeetingNotes, NotesStore
from storage.records import Turn
from storage.store import TranscriptStore

__all__ = [
    "NotesOptions",
    "PendingResult",
    "answer_question",
    "api_key_for",
    "notes_after_recording",
    "notes_for_meeting",
    "open_client",
    "retry_pending",
]

log = logging.getLogger("recorder.notes")

# Any key does for an emulator; AssemblyAI's own endpoints need the real one.
_EMULATOR_KEY = "emulator-key"


@dataclass(frozen=True, slots=True)
class NotesOptions:
    """What ``recorder notes`` was asked for."""

    model: str = DEFAULT_MODEL
    language: str | None = None
    prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        """For the pending mark, so a retry makes the notes that were asked for."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NotesOptions:
        """Read back :meth:`to_json` (unknown keys ignored)."""
        return cls(
            model=str(data.get("model") or DEFAULT_MODEL),
            language=data.get("language"),
            prompt=data.get("prompt"),
        )


@dataclass(frozen=True, slots=True)
class PendingResult:
    """The outcome of one pending meeting's retry."""

    meeting_id: int
    notes: MeetingNotes | None
    error: str | None


def api_key_for(config: Config) -> str:
    """The key to send: ASSEMBLYAI_API_KEY, or any key when everything points at an emulator."""
    if config.assemblyai_api_key:
        return config.assemblyai_api_key
    if config.emulator_url:
        return _EMULATOR_KEY
    return config.require_api_key()


def open_client(config: Config, *, retry: RetryPolicy | None = None) -> LlmClient:
    """A gateway client for the configured URL and key."""
    return LlmClient(config.llm_base_url, api_key_for(config), retry=retry)


async def _turns(store: TranscriptStore, meeting_id: int) -> list[Turn]:
    return [turn async for turn in store.iter_turns(meeting_id, with_words=False)]


async def notes_for_meeting(
    store: TranscriptStore,
    client: LlmClient,
    meeting_id: int,
    options: NotesOptions,
) -> MeetingNotes:
    """Make the meeting's notes and store them as its new current revision.

    Raises:
        LlmError: the gateway failed or its answers stayed unusable.
        StorageError: the database failed.
    """
    header = await store.get_meeting(meeting_id, with_turns=False)
    turns = await _turns(store, meeting_id)
    content, usage = await generate_notes(
        client,
        turns,
        NotesRequest(model=options.model, language=options.language, prompt=options.prompt),
        participants=[p.speaker for p in header.participants],
    )
    return await NotesStore(store).save(
        meeting_id,
        content,
        model=options.model,
        created_at=datetime.now(UTC),
        usage=usage,
        language=options.language,
        prompt=options.prompt,
    )


async def notes_after_recording(
    config: Config,
    meeting_id: int,
    options: NotesOptions,
    *,
    retry: RetryPolicy | None = None,
) -> tuple[MeetingNotes | None, str | None]:
    """Notes for a meeting that just ended: (notes, None), or (None, why not).

    Never raises a RecorderError: the recording is already saved and stays as it is;
    a failure leaves the meeting pending for ``recorder notes --pending``.
    """
    try:
        async with await TranscriptStore.open(config.database_url) as store:
            notes_store = NotesStore(store)
            await notes_store.mark_pending(
                meeting_id, requested_at=datetime.now(UTC), options=options.to_json()
            )
            try:
                async with open_client(config, retry=retry) as client:
                    return await notes_for_meeting(store, client, meeting_id, options), None
            except RecorderError as exc:
                await notes_store.mark_pending(
                    meeting_id, requested_at=datetime.now(UTC), error=str(exc)
                )
                return None, str(exc)
    except RecorderError as exc:
        return None, str(exc)


async def retry_pending(
    store: TranscriptStore, config: Config, *, retry: RetryPolicy | None = None
) -> list[PendingResult]:
    """Make the notes of every pending meeting, oldest first; failures stay pending.

    Raises:
        ConfigError: no API key.
        StorageError: the database failed.
    """
    notes_store = NotesStore(store)
    pending = await notes_store.pending()
    results: list[PendingResult] = []
    if not pending:
        return results
    async with open_client(config, retry=retry) as client:
        for entry in pending:
            options = NotesOptions.from_json(entry.options)
            try:
                notes = await notes_for_meeting(store, client, entry.meeting_id, options)
            except RecorderError as exc:
                await notes_store.mark_pending(
                    entry.meeting_id, requested_at=entry.requested_at, error=str(exc)
                )
                results.append(PendingResult(entry.meeting_id, None, str(exc)))
            else:
                results.append(PendingResult(entry.meeting_id, notes, None))
    return results


async def answer_question(
    store: TranscriptStore,
    client: LlmClient,
    meeting_id: int,
    question: str,
    *,
    model: str = DEFAULT_MODEL,
    language: str | None = None,
) -> Answer:
    """Answer a question from one meeting's transcript.

    Raises:
        LlmError: the gateway failed or its answer stayed unusable.
    """
    return await ask(
        client, await _turns(store, meeting_id), question, model=model, language=language
    )
