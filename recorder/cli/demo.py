"""``recorder demo``: record a bundled meeting on the local emulator, no account needed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import (
    CONTEXT_SETTINGS,
    FiniteFloat,
    build_config,
    read_names,
    run,
    split_keyterms,
)
from recorder.cli.recording import notes_after, print_report, record_meeting, recording_options
from recorder.config import Config, mask_url
from recorder.errors import ConfigError, UsageError
from recorder.stt.hold import ClosePolicy

if TYPE_CHECKING:
    from recorder.bot import MeetingReport

__all__ = ["demo"]


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
@recording_options
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
                report = await record_meeting(
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
                print_report(report, config, hint_next=False)
                await notes_after(demo_config, report.meeting_id)
            return report

    report = run(main())
    if not make_notes:
        print_report(report, config, hint_next=False)  # the demo prints its own next steps
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
