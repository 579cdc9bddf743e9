"""What ``recorder join`` and ``recorder demo`` share: recording, its options, its report.

Not a command module (tests/test_imports.py): both command modules import it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import Duration, FiniteFloat, Text, db_option
from recorder.config import (
    DEFAULT_EMPTY_TIMEOUT_S,
    DEFAULT_IDLE_CLOSE_S,
    DEFAULT_SESSIONS_PER_MINUTE,
    Config,
)
from recorder.stt.hold import ClosePolicy
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from recorder.app import RecordingOptions
    from recorder.bot import MeetingReport

__all__ = [
    "EXIT_CODES",
    "exit_for",
    "notes_after",
    "notes_option",
    "print_report",
    "record_meeting",
    "recording_options",
]

#: How a recording's exit code says how the meeting ended (README, "Statuses and exit codes").
EXIT_CODES = {"completed": 0, "partial": 3, "failed": 1, "interrupted": 1}


async def record_meeting(
    config: Config,
    transport_spec: str,
    *,
    channel: str | None,
    speed: float,
    options: RecordingOptions,
    quiet: bool,
) -> MeetingReport:
    """Open the transport and record, stopping cleanly on Ctrl+C or SIGTERM."""
    from recorder.app import record
    from recorder.console import LiveConsole
    from recorder.transport.select import open_transport

    transport = open_transport(
        transport_spec,
        config,
        channel=channel,
        speed=speed,
        publish=options.recap is not None,  # the spoken recap is the bot's only audio
    )
    console = LiveConsole(quiet=quiet)
    stop = asyncio.Event()

    def on_ready() -> None:
        _install_signal_handlers(stop.set, console.info)
        console.info(f"recording channel {transport.channel!r}; Ctrl+C to stop")

    return await record(
        config, transport, options=options, console=console, stop=stop, on_ready=on_ready
    )


def _install_signal_handlers(stop: Callable[[], None], say: Callable[[str], None]) -> None:
    """First Ctrl+C or SIGTERM stops cleanly; a second Ctrl+C exits at once."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            say("stopping now; turns committed so far are kept")
            os._exit(130)
        say("stopping: closing streams and saving the last turns (Ctrl+C again to quit at once)")
        stop()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread / Windows
        pass


def _cost_line(report: MeetingReport, config: Config) -> str:
    """What the streaming cost: billed socket time, speech, their ratio, price, session rate."""
    from recorder.stt.price import estimate_cost, list_price_per_hour

    price = config.price_per_hour
    if price is None:
        price = list_price_per_hour(config.speech_model)
    ratio = f"{report.billed_ms / report.speech_ms:.2f}x" if report.speech_ms else "no speech"
    rate = f"{report.sessions_per_minute:g}/min"
    if report.session_refusals:
        rate += f", learned after {report.session_refusals} refused"
    return (
        f"cost: {report.billed_ms / 1000:.1f} s billed for {report.speech_ms / 1000:.1f} s "
        f"of speech ({ratio}), about ${estimate_cost(report.billed_ms, price):.4f} "
        f"at ${price:g}/h; session rate {rate}"
    )


def print_report(report: MeetingReport, config: Config, *, hint_next: bool = True) -> None:
    """The recording's summary on stderr: length, cost, gaps left, status and what next."""
    from recorder.console import plural
    from recorder.export.render import format_duration

    click.echo(
        f"meeting {report.meeting_id} ({report.channel}): "
        f"{format_duration(round(report.duration_s * 1000))}, "
        f"{plural(report.turns, 'turn')}"
        f"{f' ({report.repaired_turns} repaired)' if report.repaired_turns else ''} "
        f"from {plural(report.participants, 'participant')}, "
        f"{report.billed_seconds:.1f} s of streaming billed over "
        f"{plural(report.sessions, 'session')}",
        err=True,
    )
    if report.end_reason == "empty":
        who = "nobody joined" if report.participants == 0 else "everyone had left"
        click.echo(f"the channel stayed empty ({who}); recording ended", err=True)
    if report.dropped_speech_ms:
        click.echo(
            f"warning: {report.dropped_speech_ms / 1000:.1f} s of speech could not be transcribed",
            err=True,
        )
    if report.dropped_audio_ms:
        click.echo(
            f"warning: {report.dropped_audio_ms / 1000:.1f} s of participants' audio was lost "
            "before transcription (this machine fell behind)",
            err=True,
        )
    click.echo(_cost_line(report, config), err=True)
    if report.audio_kept_s:
        click.echo(
            f"audio kept: {report.audio_kept_s:.0f} s of participants' audio in "
            f"{config.audio_directory / f'meeting-{report.meeting_id}'}",
            err=True,
        )
    if report.audio_problem:
        click.echo(f"warning: {report.audio_problem}", err=True)
    for gap in report.gaps:
        if gap.state != "repaired":
            click.echo(
                f"gap: uid {gap.uid} {format_clock(gap.from_ms)}-{format_clock(gap.to_ms)}: "
                f"{gap.cause} ({gap.state})",
                err=True,
            )
    db = "" if config.is_default_database else " --db URL"
    click.echo(f"status: {report.status}", err=True)
    if report.status == "partial" and any(g.state == "open" for g in report.gaps):
        click.echo(f"next: recorder repair {report.meeting_id}{db}", err=True)
    if hint_next:
        click.echo(f"next: recorder export {report.meeting_id}{db} -o meeting.html", err=True)


def notes_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--notes`` (``make_notes``): write the meeting's notes when it ends."""
    return click.option(
        "--notes",
        "make_notes",
        is_flag=True,
        help=(
            "When the meeting ends, write its notes with AssemblyAI's LLM Gateway (sends "
            "the transcript with speakers' names). A failure leaves the recording as it "
            "is; 'recorder notes --pending' retries."
        ),
    )(function)


async def notes_after(config: Config, meeting_id: int) -> None:
    """Make the notes of a meeting that just ended; report, never fail the recording."""
    from recorder.notes.service import NotesOptions, notes_after_recording
    from recorder.notes.text import format_cost

    made, error = await notes_after_recording(config, meeting_id, NotesOptions())
    if made is None:
        click.echo(
            f"warning: notes were not made ({error}); the recording is saved; "
            "retry with 'recorder notes --pending'",
            err=True,
        )
        return
    content = made.content
    click.echo(
        f"notes: {len(content.decisions)} decisions, {len(content.action_items)} action items, "
        f"{len(content.open_questions)} open questions ({format_cost(made)}); "
        f"see 'recorder notes {meeting_id}'",
        err=True,
    )


def exit_for(report: MeetingReport) -> None:
    """Exit 3 for a partial meeting, 1 for a failed one (0, by returning, when completed)."""
    code = EXIT_CODES.get(report.status, 0)
    if code:
        sys.exit(code)


def recording_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a recording (``join`` and ``demo``): streams, limits, names, audio, db."""
    options = [
        click.option(
            "--idle-close",
            "idle_close_s",
            type=Duration(min_s=0.5),
            default=DEFAULT_IDLE_CLOSE_S,
            show_default=True,
            help="Close a participant's stream after this much silence (it bills while open), "
            "e.g. 2 or 30s.",
        ),
        click.option(
            "--sessions-per-minute",
            type=FiniteFloat(min=0.1, max=100_000),
            default=DEFAULT_SESSIONS_PER_MINUTE,
            show_default=True,
            help="New STT sessions your AssemblyAI account allows a minute (free: 5, paid: 100+).",
        ),
        click.option(
            "--duration",
            "duration_s",
            type=Duration(min_s=0.1),
            help="Stop recording after this long, e.g. 90, 90s, 15m, 1h or 1h30m.",
        ),
        click.option(
            "--empty-timeout",
            "empty_timeout_s",
            type=Duration(min_s=0.1),
            default=DEFAULT_EMPTY_TIMEOUT_S,
            show_default=True,
            help="Stop once the channel has had nobody in it this long, e.g. 2m.",
        ),
        click.option(
            "--speaker-names",
            type=click.Path(path_type=Path, dir_okay=False),
            help='Names for uids: JSON {"101": "Alice"} or lines 101=Alice.',
        ),
        click.option(
            "--keyterms",
            type=Text(),
            default="",
            help="Comma-separated words to boost (names, jargon).",
        ),
        click.option("--prompt", type=Text(), help="Instructions for the speech model (beta)."),
        click.option(
            "--speech-model",
            type=Text(),
            help="Streaming speech model (default u3-rt-pro; $RECORDER_SPEECH_MODEL).",
        ),
        click.option(
            "--close-policy",
            type=click.Choice([p.value for p in ClosePolicy]),
            default=ClosePolicy.TURN_END.value,
            show_default=True,
            help="Close a stream at the end of each turn, or only after --idle-close of silence.",
        ),
        click.option(
            "--price-per-hour",
            type=FiniteFloat(min=0, max=1000),
            metavar="USD",
            help="Streaming price per hour, for the cost estimate "
            "(default: the model's list price; $RECORDER_PRICE_PER_HOUR).",
        ),
        click.option("--quiet", "-q", is_flag=True, help="Do not print turns as they are spoken."),
        click.option(
            "--audio-dir",
            type=click.Path(path_type=Path, file_okay=False),
            help=(
                "Where participants' audio is kept ($RECORDER_AUDIO_DIR; default: an 'audio' "
                "folder next to the database)."
            ),
        ),
        click.option(
            "--no-audio",
            is_flag=True,
            help="Keep no audio (then nothing live transcription misses can be repaired).",
        ),
        db_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function
