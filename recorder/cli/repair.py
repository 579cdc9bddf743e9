"""``recorder repair`` and ``recorder retranscribe``: transcribe a meeting's kept audio again."""

from __future__ import annotations

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, emulator_option, run
from recorder.config import Config
from recorder.errors import UsageError

__all__ = ["repair", "retranscribe"]

_ASYNC_URL_HELP = (
    "Pre-recorded (async) API override, e.g. an emulator's http://127.0.0.1:8765 "
    "($RECORDER_ASYNC_URL)."
)


async def _repair(config: Config, meeting: str) -> str:
    """Repair one meeting's open gaps; returns its status afterwards."""
    from recorder.audio_store.reader import _length_ms
    from recorder.audio_store.repair import repair_meeting
    from recorder.batch.client import AsyncClient
    from recorder.console import plural
    from recorder.timeline import format_clock
    from recorder.writer import replay_leftover_journals
    from storage.audio import list_segments
    from storage.gaps import add_crash_gaps, list_gaps, set_meeting_status
    from storage.store import TranscriptStore

    api_key = config.require_api_key()
    async with await TranscriptStore.open(config.database_url) as store:
        await store.mark_interrupted_meetings()
        meeting_id = await store.resolve_meeting(meeting)
        # Writes a recorder killed while the database was away left in its journal.
        await replay_leftover_journals(
            store,
            config.audio_directory,
            meeting_id=meeting_id,
            say=lambda s: click.echo(s, err=True),
        )
        read = await store.get_meeting(meeting_id, with_turns=False)
        summary = read.summary
        names = {p.uid: p.display_name for p in read.participants}
        if summary.status == "recording":
            raise UsageError(
                f"meeting {meeting_id} is still being recorded; it repairs itself when it ends"
            )
        segments = await list_segments(store, meeting_id)
        if summary.status == "interrupted":
            ends: dict[int, int] = {}
            for segment in segments:
                end = segment.start_ms + _length_ms(segment)
                ends[segment.uid] = max(ends.get(segment.uid, 0), end)
            added = await add_crash_gaps(store, meeting_id, ends)
            if added:
                click.echo(
                    f"found {plural(added, 'stretch', 'stretches')} of audio the stopped "
                    "recorder had not transcribed",
                    err=True,
                )
        if not any(g.state == "open" for g in await list_gaps(store, meeting_id)):
            click.echo(f"meeting {meeting_id} has nothing to repair ({summary.status})", err=True)
            return summary.status
        async with AsyncClient(config.async_base_url, api_key) as client:
            outcome = await repair_meeting(
                store, meeting_id, client, say=lambda line: click.echo(line, err=True)
            )
        click.echo(outcome.summary(), err=True)
        gaps = await list_gaps(store, meeting_id)
        status = summary.status
        if status in ("partial", "failed"):
            if all(g.state == "repaired" for g in gaps):
                status = "completed"
            elif any(g.state == "repaired" for g in gaps) or summary.turn_count:
                status = "partial"
            await set_meeting_status(store, meeting_id, status)
        for gap in gaps:
            if gap.state != "repaired":
                name = names.get(gap.uid)
                who = f"{name} ({gap.uid})" if name else f"uid {gap.uid}"
                click.echo(
                    f"gap: {who} {format_clock(gap.from_ms)}-{format_clock(gap.to_ms)}: "
                    f"{gap.cause} ({gap.state})",
                    err=True,
                )
        click.echo(f"meeting {meeting_id}: {status}", err=True)
        return status


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING")
@click.option("--async-url", help=_ASYNC_URL_HELP)
@emulator_option
@db_option
def repair(
    meeting: str, async_url: str | None, emulator_url: str | None, database_url: str | None
) -> None:
    """Transcribe what live transcription missed in a meeting, from its kept audio.

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. Each open
    gap is sent to AssemblyAI's pre-recorded API (same key) and its words are
    stored at their true times as turns marked 'repaired', never repeating a
    live word. A meeting whose recorder was killed is repaired too: its audio
    after each participant's last transcribed word is transcribed. A recording
    repairs itself when it ends; run this when that could not finish. It
    prints each stretch it repairs ("+ repaired Ada (101) 00:01:05-00:01:40
    from the stored audio: 42 words"), then any gap still open and the
    meeting's status.

    \b
    Examples:
        recorder repair latest
        recorder repair 12 --db postgresql://user@host/notes
        recorder repair latest --emulator http://127.0.0.1:8765   # offline: 'recorder emulate'

    \b
    Exit status: 0 completed (or interrupted, with nothing left to repair),
    3 partial (gaps left), 1 failed or an error.
    """
    config = build_config(database_url=database_url, async_url=async_url, emulator_url=emulator_url)
    status = run(_repair(config, meeting))
    code = {"partial": 3, "failed": 1}.get(status, 0)
    if code:
        raise SystemExit(code)


async def _retranscribe(
    config: Config,
    meeting: str,
    speech_models: tuple[str, ...],
    keyterms: tuple[str, ...],
    language: str | None,
) -> tuple[int, int, int]:
    from recorder.audio_store.repair import retranscribe_meeting
    from recorder.batch.client import AsyncClient
    from storage.store import TranscriptStore

    api_key = config.require_api_key()
    async with await TranscriptStore.open(config.database_url) as store:
        meeting_id = await store.resolve_meeting(meeting)
        summary = (await store.get_meeting(meeting_id, with_turns=False)).summary
        if summary.status == "recording":
            raise UsageError(f"meeting {meeting_id} is still being recorded; wait for its end")
        async with AsyncClient(config.async_base_url, api_key) as client:
            revision, words = await retranscribe_meeting(
                store,
                meeting_id,
                client,
                speech_models=speech_models,
                keyterms=keyterms,
                language_code=language,
                say=lambda line: click.echo(line, err=True),
            )
    return meeting_id, revision, words


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING")
@click.option(
    "--speech-model",
    "speech_models",
    multiple=True,
    metavar="MODEL",
    help="Pre-recorded speech model, in priority order (repeatable), e.g. universal-3-pro.",
)
@click.option("--keyterms", default="", help="Comma-separated words to boost (names, jargon).")
@click.option("--language", metavar="CODE", help="Language code, e.g. en, es, de.")
@click.option("--async-url", help=_ASYNC_URL_HELP)
@emulator_option
@db_option
def retranscribe(
    meeting: str,
    speech_models: tuple[str, ...],
    keyterms: str,
    language: str | None,
    async_url: str | None,
    emulator_url: str | None,
    database_url: str | None,
) -> None:
    """Transcribe a meeting's whole kept audio again, as a new transcript revision.

    MEETING is a meeting id or 'latest'. Uses AssemblyAI's pre-recorded API
    (same key): try a better model, new keyterms or another language. It
    prints each participant's word count, then the new revision's number.
    Nothing earlier is deleted: 'show' and 'export' use the newest revision
    unless given --revision N.

    \b
    Examples:
        recorder retranscribe latest --keyterms "Kubernetes,Zoë"
        recorder retranscribe 1 --speech-model universal-3-pro --language es
        recorder show 1 --revision 1
    """
    if language is not None and not language.replace("_", "").isalpha():
        raise UsageError(f"--language must be a language code such as en or es, not {language!r}")
    config = build_config(database_url=database_url, async_url=async_url, emulator_url=emulator_url)
    terms = tuple(k.strip() for k in keyterms.split(",") if k.strip())
    meeting_id, revision, words = run(
        _retranscribe(config, meeting, speech_models, terms, language)
    )
    from recorder.console import plural

    click.echo(
        f"meeting {meeting_id}: revision {revision} stored with {plural(words, 'word')}; "
        f"see 'recorder show {meeting_id}' (or --revision {revision - 1} for the previous one)",
        err=True,
    )
