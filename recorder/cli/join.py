"""``recorder join`` and ``recorder demo``: record a meeting, live, into the database."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import (
    CONTEXT_SETTINGS,
    Duration,
    FiniteFloat,
    Text,
    build_config,
    db_option,
    emulator_option,
    llm_url_option,
    read_names,
    run,
    split_keyterms,
)
from recorder.cli.recap_options import recap_options
from recorder.config import (
    DEFAULT_EMPTY_TIMEOUT_S,
    DEFAULT_IDLE_CLOSE_S,
    DEFAULT_SESSIONS_PER_MINUTE,
    Config,
    mask_url,
)
from recorder.errors import ConfigError, SttRejected, UsageError
from recorder.stt.hold import ClosePolicy
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from recorder.app import RecordingOptions
    from recorder.bot import MeetingReport
    from recorder.recap.settings import RecapSettings

__all__ = ["EXIT_CODES", "demo", "join"]

#: How a recording's exit code says how the meeting ended (README, "Statuses and exit codes").
EXIT_CODES = {"completed": 0, "partial": 3, "failed": 1, "interrupted": 1}


async def _record(
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


def _check_speed(speed: float, transport_spec: str, config: Config) -> None:
    """``--speed`` plays a replay faster than real time, which only an emulator accepts.

    Raises:
        UsageError: --speed with a live channel, or against the real service.
    """
    if speed == 1.0:
        return
    if not transport_spec.startswith("replay:"):
        raise UsageError(f"--speed {speed:g} only applies to --transport replay:FILE")
    if config.stt_url is None:
        raise UsageError(
            f"--speed {speed:g} sends audio faster than real time, which the real service "
            f"refuses; use --stt-url with an emulator started with --realtime-factor {speed:g}"
        )


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


def _print_report(report: MeetingReport, config: Config, *, hint_next: bool = True) -> None:
    from recorder.console import plural
    from recorder.export.render import format_duration

    click.echo(
        f"meeting {report.meeting_id} ({report.channel}): "
        f"{format_duration(round(report.duration_s * 1000))}, "
        f"{plural(report.turns, 'turn')} from {plural(report.participants, 'participant')}, "
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


def _notes_option(function: Callable[..., Any]) -> Callable[..., Any]:
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


async def _notes_after(config: Config, meeting_id: int) -> None:
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


def _exit_for(report: MeetingReport) -> None:
    """Exit 3 for a partial meeting, 1 for a failed one (0, by returning, when completed)."""
    code = EXIT_CODES.get(report.status, 0)
    if code:
        sys.exit(code)


def _recording_options(function: Callable[..., Any]) -> Callable[..., Any]:
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


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--channel", type=Text(), help="Agora channel to join ($AGORA_CHANNEL).")
@click.option(
    "--transport",
    "transport_spec",
    default="agora",
    show_default=True,
    help="'agora' for a real channel, or 'replay:FILE' to play a scripted meeting.",
)
@click.option(
    "--stt-url", help="Streaming endpoint override, e.g. an emulator ($RECORDER_STT_URL)."
)
@click.option(
    "--async-url",
    help=(
        "Pre-recorded (async) API override, used to repair gaps, e.g. an emulator's "
        "http://127.0.0.1:8765 ($RECORDER_ASYNC_URL)."
    ),
)
@click.option(
    "--speed",
    type=FiniteFloat(min=0.1, max=100),
    default=1.0,
    show_default=True,
    help="Replay speed (needs --stt-url of an emulator started with --realtime-factor "
    "at least this).",
)
@_recording_options
@recap_options
@_notes_option
@llm_url_option
@emulator_option
def join(
    channel: str | None,
    transport_spec: str,
    stt_url: str | None,
    async_url: str | None,
    speed: float,
    idle_close_s: float,
    sessions_per_minute: float,
    duration_s: float | None,
    empty_timeout_s: float,
    speaker_names: Path | None,
    keyterms: str,
    prompt: str | None,
    speech_model: str | None,
    close_policy: str,
    price_per_hour: float | None,
    quiet: bool,
    audio_dir: Path | None,
    no_audio: bool,
    database_url: str | None,
    recap: RecapSettings | None,
    agent_url: str | None,
    make_notes: bool,
    llm_url: str | None,
    emulator_url: str | None,
) -> None:
    """Join a channel and record every participant's speech until stopped.

    Credentials come from the environment or a .env file: ASSEMBLYAI_API_KEY,
    AGORA_APP_ID and AGORA_APP_CERTIFICATE (or AGORA_TOKEN). Ctrl+C stops
    cleanly; a second Ctrl+C quits at once.

    \b
    Examples:
        recorder join --channel standup
        recorder join --channel standup --duration 1h --speaker-names names.json
        recorder join --transport replay:meeting.json --stt-url ws://127.0.0.1:8765/v3/ws
        recorder join --channel standup --recap --recap-every 15m --recap-on-end
        recorder join --channel standup --notes
        recorder join --transport replay:meeting.json --emulator http://127.0.0.1:8765 --notes

    With --recap, saying "recorder, recap" in the meeting makes the bot speak
    a recap of the meeting so far (AssemblyAI Voice Agent, same key); anyone
    speaking over it stops it. Recaps are stored as notes.

    Every participant's audio is kept (FLAC, about 35-70 MB an hour each); what
    live transcription misses (service unreachable, outages) is recorded as a
    gap and repaired from that audio with the pre-recorded API.

    \b
    Exit status: 0 completed, 3 partial (gaps left; 'recorder repair' retries),
    1 failed (nothing could be recorded) or an error, 2 bad usage.
    """
    from recorder.app import RecordingOptions

    config = build_config(
        database_url=database_url,
        channel=channel,
        stt_url=stt_url,
        speech_model=speech_model,
        agent_url=agent_url,
        llm_url=llm_url,
        emulator_url=emulator_url,
        async_url=async_url,
        audio_dir=str(audio_dir) if audio_dir is not None else None,
        is_audio_kept=False if no_audio else None,
        price_per_hour=price_per_hour,
    )
    config.require_api_key()  # before the transport: its SDK may not even be installed
    _check_speed(speed, transport_spec, config)
    options = RecordingOptions(
        idle_close_s=idle_close_s,
        sessions_per_minute=sessions_per_minute,
        duration_s=duration_s,
        empty_timeout_s=empty_timeout_s,
        names=read_names(speaker_names),
        keyterms=split_keyterms(keyterms),
        prompt=prompt,
        realtime_factor=speed,
        recap=recap,
        close_policy=ClosePolicy(close_policy),
    )
    try:
        report = run(
            _record(
                config,
                transport_spec,
                channel=config.channel,
                speed=speed,
                options=options,
                quiet=quiet,
            )
        )
    except SttRejected as exc:
        if exc.code == 3007 and "rate exceeded" in exc.reason.lower() and speed > 1:
            url = config.streaming_url.split("?", 1)[0]
            raise ConfigError(
                f"the emulator at {url} refused audio played at --speed {speed:g}; "
                f"start it with 'recorder emulate --realtime-factor {speed:g}'"
            ) from exc
        raise
    _print_report(report, config)
    if make_notes:
        run(_notes_after(config, report.meeting_id))
    _exit_for(report)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--speed",
    type=FiniteFloat(min=0.5, max=50),
    default=1.0,
    show_default=True,
    help="Play the meeting this many times faster than real time.",
)
@click.option(
    "--script",
    "script_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Play this replay file instead of the bundled meeting.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("recorder-demo.html"),
    show_default=True,
    help="Where to write the transcript.",
)
@click.option(
    "--recap",
    "recap_on_end",
    is_flag=True,
    help="End with a spoken recap from the local Voice Agent emulator.",
)
@click.option(
    "--notes",
    "make_notes",
    is_flag=True,
    help="Write the meeting's notes with the local LLM Gateway emulator when it ends.",
)
@_recording_options
def demo(
    speed: float,
    script_path: Path | None,
    output: Path,
    recap_on_end: bool,
    make_notes: bool,
    idle_close_s: float,
    sessions_per_minute: float,
    duration_s: float | None,
    empty_timeout_s: float,
    speaker_names: Path | None,
    keyterms: str,
    prompt: str | None,
    speech_model: str | None,
    close_policy: str,
    price_per_hour: float | None,
    quiet: bool,
    audio_dir: Path | None,
    no_audio: bool,
    database_url: str | None,
) -> None:
    """Record a bundled meeting on the local emulator: no account or network needed.

    Starts the AssemblyAI emulator in this process, plays a four-person
    meeting through exactly the pipeline 'recorder join' uses, stores it in
    your database and writes a transcript you can open in a browser.

    \b
    Examples:
        recorder demo
        recorder demo --speed 4 -o standup.html
        recorder demo --recap
        recorder demo --notes
    """
    from importlib.resources import as_file, files

    _check_demo_output(output)
    config = build_config(
        database_url=database_url,
        speech_model=speech_model,
        price_per_hour=price_per_hour,
        audio_dir=str(audio_dir) if audio_dir is not None else None,
        is_audio_kept=False if no_audio else None,
    )
    resource = files("recorder.data").joinpath("demo_meeting.json")

    async def main() -> MeetingReport:
        from recorder.app import RecordingOptions
        from recorder.emulator.agent.server import VoiceAgentEmulator
        from recorder.emulator.server import serve_emulators
        from recorder.emulator.streaming.server import StreamingEmulator
        from recorder.recap.settings import RecapSettings

        emulator = StreamingEmulator(realtime_factor=max(1.0, speed) * 1.5)
        # The agent speaks at the replay's pace, as the real one speaks in real time.
        agent = VoiceAgentEmulator(realtime_factor=speed)
        # One emulator for every endpoint: streaming, the agent, notes and repair.
        async with serve_emulators(streaming=emulator, agent=agent) as server:
            demo_config = dataclasses.replace(
                config,
                assemblyai_api_key="demo-key",
                stt_url=server.urls["streaming"],
                agent_url=server.urls["agent"],
                async_url=server.urls["async"],
                llm_url=server.urls["llm"],
                emulator_url=server.urls["emulator"],
            )
            with as_file(resource) as bundled:
                path = script_path or bundled
                report = await _record(
                    demo_config,
                    f"replay:{path}",
                    channel=None,
                    speed=speed,
                    options=RecordingOptions(
                        idle_close_s=idle_close_s,
                        sessions_per_minute=max(sessions_per_minute, 60.0),
                        duration_s=duration_s,
                        empty_timeout_s=empty_timeout_s,
                        names=read_names(speaker_names),
                        keyterms=split_keyterms(keyterms),
                        prompt=prompt,
                        realtime_factor=speed,
                        # The bundled meeting has no spoken request: recap when it ends.
                        recap=RecapSettings(on_end=True) if recap_on_end else None,
                        close_policy=ClosePolicy(close_policy),
                    ),
                    quiet=quiet,
                )
            if make_notes:
                _print_report(report, config, hint_next=False)
                await _notes_after(demo_config, report.meeting_id)
            return report

    report = run(main())
    if not make_notes:
        _print_report(report, config, hint_next=False)  # the demo prints its own next steps
    _write_demo_transcript(config, report.meeting_id, output)


def _check_demo_output(output: Path) -> None:
    """Fail on an output the transcript could not go to before playing the meeting.

    Raises:
        UsageError: the file name does not say the format (the demo has no --format).
        ConfigError: its folder does not exist.
    """
    from recorder.export.exporter import FORMATS, format_for_path

    if format_for_path(output) is None:
        raise UsageError(
            f"-o: cannot tell the format from {output.name!r}; end the name with "
            f"{', '.join('.' + f for f in FORMATS[:-1])} or .{FORMATS[-1]}"
        )
    folder = output.absolute().parent
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write {str(output)!r}: the folder {str(folder)!r} does not exist"
        )


def _write_demo_transcript(config: Config, meeting_id: int, output: Path) -> None:
    from recorder.export.files import export_meeting

    run(export_meeting(config.database_url, meeting_id, output))
    click.echo(f"transcript written to {output}", err=True)
    click.echo("try next:", err=True)
    for line in _try_next_lines(config):
        click.echo(f"    {line}", err=True)


def _try_next_lines(config: Config) -> list[str]:
    """Commands to run after the demo, each runnable verbatim in a new shell."""
    import shlex
    import shutil
    import sys

    lines = []
    bin_dir = Path(sys.executable).parent
    found = shutil.which("recorder")
    if sys.prefix != sys.base_prefix and (
        found is None or Path(found).parent.resolve() != bin_dir.resolve()
    ):
        # Run from a virtual environment that is not on PATH (as 'make demo' does).
        activate = bin_dir / "activate"
        if activate.is_relative_to(Path.cwd()):
            activate = activate.relative_to(Path.cwd())
        lines.append(f". {shlex.quote(str(activate))}    # puts recorder on your PATH")
    db = ""
    if not config.is_default_database and "RECORDER_DATABASE_URL" not in os.environ:
        shown = mask_url(config.database_url)
        # Never print a password: then the user fills the URL in.
        db = " --db " + (shlex.quote(shown) if shown == config.database_url else "URL")
    lines += [
        f"recorder meetings{db}",
        f"recorder show latest{db}",
        f"recorder search delayed{db}",
        f"recorder sql --tables{db}",
    ]
    return lines
