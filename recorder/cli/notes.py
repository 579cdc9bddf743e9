"""``recorder notes`` and ``recorder ask``: written notes and answers from a meeting's transcript.

Both send the transcript, with speakers' names, to AssemblyAI's LLM Gateway (same key
as streaming); ``--emulator`` or ``--llm-url`` point them at ``recorder emulate``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import (
    CONTEXT_SETTINGS,
    build_config,
    db_option,
    emulator_option,
    llm_url_option,
    run,
)
from recorder.errors import UsageError
from recorder.export.escape import clean_text

if TYPE_CHECKING:
    from storage.notes import MeetingNotes

__all__ = ["ask", "notes"]

# The documented default (recorder/llm/pricing.py); kept literal so --help imports nothing.
_DEFAULT_MODEL = "claude-haiku-4-5-20251001"


def _model_option(function: Any) -> Any:
    return click.option(
        "--model",
        default=_DEFAULT_MODEL,
        show_default=True,
        help="LLM Gateway model id (see AssemblyAI's LLM Gateway model list).",
    )(function)


def _language_option(function: Any) -> Any:
    return click.option(
        "--language", metavar="LANGUAGE", help="Write in this language, e.g. French or de."
    )(function)


def _notes_json(notes: MeetingNotes) -> dict[str, Any]:
    from recorder.export.json_format import meeting_notes_to_json

    return meeting_notes_to_json(notes)


def _echo_notes(notes: MeetingNotes) -> None:
    from recorder.notes.text import notes_lines

    for line in notes_lines(notes, clean_text):
        click.echo(line)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING", required=False)
@_model_option
@click.option("--prompt", metavar="TEXT", help="Extra instructions for the notes.")
@_language_option
@click.option("--force", is_flag=True, help="Make new notes even if the meeting has some.")
@click.option(
    "--pending",
    is_flag=True,
    help="Make the notes that 'join --notes' could not make yet (retries each once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@llm_url_option
@emulator_option
@db_option
def notes(
    meeting: str | None,
    model: str,
    prompt: str | None,
    language: str | None,
    force: bool,
    pending: bool,
    as_json: bool,
    llm_url: str | None,
    emulator_url: str | None,
    database_url: str | None,
) -> None:
    """Write a meeting's notes: summary, decisions, action items, open questions.

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. The
    transcript, with speakers' names, is sent to AssemblyAI's LLM Gateway
    (same ASSEMBLYAI_API_KEY). Notes are stored with the meeting and shown by
    'show' and every export; each item links to the moment it was said. A
    meeting that has notes shows them; --force makes new ones and keeps the
    earlier as a previous revision.

    \b
    Examples:
        recorder notes latest
        recorder notes 12 --language French --prompt "Focus on the budget"
        recorder notes 12 --force --model claude-sonnet-4-6
        recorder notes --pending
        recorder notes latest --emulator http://127.0.0.1:8765
    """
    if pending and meeting is not None:
        raise UsageError("give either MEETING or --pending, not both")
    if not pending and meeting is None:
        raise UsageError("give a MEETING (an id or 'latest'), or --pending")
    config = build_config(database_url=database_url, llm_url=llm_url, emulator_url=emulator_url)

    async def main() -> int:
        from recorder.notes.service import (
            NotesOptions,
            api_key_for,
            notes_for_meeting,
            open_client,
            retry_pending,
        )
        from storage.notes import NotesStore
        from storage.store import TranscriptStore

        api_key_for(config)  # a missing key is reported before any work
        async with await TranscriptStore.open(config.database_url) as store:
            if pending:
                results = await retry_pending(store, config)
                if as_json:
                    click.echo(
                        json.dumps(
                            [
                                {
                                    "meeting_id": r.meeting_id,
                                    "ok": r.error is None,
                                    "error": r.error,
                                    "revision": r.notes.revision if r.notes else None,
                                }
                                for r in results
                            ],
                            indent=2,
                        )
                    )
                elif not results:
                    click.echo("no meetings are waiting for notes")
                for r in results:
                    if as_json:
                        continue
                    if r.notes is not None:
                        click.echo(
                            f"meeting {r.meeting_id}: notes made (revision {r.notes.revision})"
                        )
                    else:
                        click.echo(f"meeting {r.meeting_id}: still pending: {r.error}")
                return 1 if any(r.error for r in results) else 0
            assert meeting is not None
            meeting_id = await store.resolve_meeting(meeting)
            existing = None if force else await NotesStore(store).current(meeting_id)
            if existing is None:
                async with open_client(config) as client:
                    made = await notes_for_meeting(
                        store,
                        client,
                        meeting_id,
                        NotesOptions(model=model, language=language, prompt=prompt),
                    )
            else:
                made = existing
            if as_json:
                shown = {"meeting_id": meeting_id, **_notes_json(made)}
                click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
            else:
                _echo_notes(made)
                if existing is not None:
                    click.echo(
                        f"(stored notes; 'recorder notes {meeting_id} --force' makes new ones)",
                        err=True,
                    )
            return 0

    code = run(main())
    if code:
        raise SystemExit(code)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING")
@click.argument("question")
@_model_option
@_language_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@llm_url_option
@emulator_option
@db_option
def ask(
    meeting: str,
    question: str,
    model: str,
    language: str | None,
    as_json: bool,
    llm_url: str | None,
    emulator_url: str | None,
    database_url: str | None,
) -> None:
    """Answer a question from a meeting's transcript, with the times it relies on.

    MEETING is a meeting id or 'latest'. The transcript, with speakers' names,
    is sent to AssemblyAI's LLM Gateway. When the transcript does not contain
    the answer, it says so.

    \b
    Examples:
        recorder ask latest "Who will send the budget, and when?"
        recorder ask 12 "What did we decide about the launch date?" --json
    """
    if not question.strip():
        raise UsageError("the question is empty")
    config = build_config(database_url=database_url, llm_url=llm_url, emulator_url=emulator_url)

    async def main() -> None:
        from recorder.notes.service import answer_question, api_key_for, open_client
        from recorder.notes.transcript import clock
        from storage.store import TranscriptStore

        api_key_for(config)
        async with await TranscriptStore.open(config.database_url) as store:
            meeting_id = await store.resolve_meeting(meeting)
            async with open_client(config) as client:
                answer = await answer_question(
                    store, client, meeting_id, question, model=model, language=language
                )
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "meeting_id": meeting_id,
                        "found": answer.found,
                        "answer": answer.text if answer.found else None,
                        "sources": [
                            {
                                "turn_id": s.turn_id,
                                "speaker": s.speaker,
                                "start_ms": s.start_ms,
                                "end_ms": s.end_ms,
                                "text": s.text,
                            }
                            for s in answer.sources
                        ],
                        "usage": {
                            "input_tokens": answer.usage.input_tokens,
                            "output_tokens": answer.usage.output_tokens,
                            "price_usd": answer.usage.price_usd,
                        },
                    },
                    indent=2,
                    ensure_ascii=False,
                )
            )
            return
        if not answer.found:
            click.echo("The transcript does not contain the answer.")
            return
        click.echo(clean_text(answer.text))
        click.echo("Based on:")
        for source in answer.sources:
            click.echo(
                f"  [{clock(source.start_ms)}] {clean_text(source.speaker)}: "
                f"{clean_text(source.text)}"
            )

    run(main())
