"""``recorder join``: record a meeting, live, into the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import (
    CONTEXT_SETTINGS,
    FiniteFloat,
    Text,
    build_config,
    emulator_option,
    llm_url_option,
    read_names,
    run,
    split_keyterms,
)
from recorder.cli.recap_options import recap_options
from recorder.cli.recording import (
    exit_for,
    notes_after,
    notes_option,
    print_report,
    record_meeting,
    recording_options,
)
from recorder.config import Config
from recorder.errors import ConfigError, SttRejected, UsageError
from recorder.stt.hold import ClosePolicy

if TYPE_CHECKING:
    from recorder.recap.settings import RecapSettings

__all__ = ["join"]


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
@recording_options
@recap_options
@notes_option
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
            record_meeting(
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
    print_report(report, config)
    if make_notes:
        run(notes_after(config, report.meeting_id))
    exit_for(report)
