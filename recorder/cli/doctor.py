"""``recorder doctor``: check this machine is ready for a real recording, one line per check.

Each check says ``ok``, ``warn`` or ``FAIL`` and, when not ok, what to do.
Nothing secret is ever printed. ``--online`` also opens one real streaming
session (Begin, then Terminate) to prove the key and the network.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run
from recorder.cli.output import echo_json
from recorder.config import Config, mask_url
from recorder.console import plural
from recorder.errors import ConfigError, RecorderError

__all__ = [
    "Check",
    "check_agora_sdk",
    "check_api_key",
    "check_app_id",
    "check_audio_tap",
    "check_channel",
    "check_credentials",
    "check_database",
    "check_python",
    "check_read_only_sql",
    "check_streaming",
    "check_token",
    "doctor",
    "run_checks",
]

_MIN_PYTHON = (3, 11)
_PROBE_CHANNEL = "recorder-doctor"


@dataclass(frozen=True, slots=True)
class Check:
    """The result of one check.

    Attributes:
        name: what was checked (a short label).
        status: ``ok``, ``warn`` (works, but note this) or ``fail``.
        detail: what was found, or what to do about it.
        is_required: a ``fail`` here makes ``recorder doctor`` exit non-zero.
    """

    name: str
    status: str
    detail: str
    is_required: bool = True

    @property
    def is_failure(self) -> bool:
        """Whether this check blocks a real run."""
        return self.status == "fail" and self.is_required


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _fail(name: str, detail: str, *, is_required: bool = True) -> Check:
    return Check(name, "fail", detail, is_required)


def _warn(name: str, detail: str) -> Check:
    return Check(name, "warn", detail, is_required=False)


def check_python() -> Check:
    """Python version and platform."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    where = f"python {version} on {sys.platform} {platform.machine()}"
    if sys.version_info[:2] < _MIN_PYTHON:
        return _fail("python", f"{where}; recorder needs python 3.11 or newer")
    return _ok("python", where)


def check_agora_sdk() -> Check:
    """The Agora SDK judged as its own import would judge it, without importing it.

    Its ``agora/__init__.py`` decides at import whether to keep its native
    library, or delete it and download it again, or exit; the pre-flight
    reads the same files the same way (docs/providers.md, "Agora: the stand-in").
    """
    from recorder.transport.agora.preflight import WOULD_IMPORT, judge_agora_sdk

    try:
        verdict = judge_agora_sdk()
    except RecorderError as exc:
        return _fail("agora sdk", str(exc))
    if verdict.outcome == WOULD_IMPORT:
        return _ok("agora sdk", f"import would load it: {verdict.reason}")
    outcome = _AGORA_OUTCOMES.get(verdict.outcome, verdict.outcome)
    return _fail("agora sdk", f"import {outcome}: {verdict.reason}")


def check_audio_tap() -> Check:
    """Which path Agora's audio frames take: the native tap, or the Python observer.

    See docs/providers.md, "Agora: the native tap". Both record the same
    audio; the Python observer costs several times more CPU per participant.
    """
    from recorder.transport.agora.tap import tap_status

    native, detail = tap_status()
    return _ok("audio tap", detail) if native else _warn("audio tap", detail)


# What a refused import would do, by verdict (recorder.transport.agora.preflight).
_AGORA_OUTCOMES = {
    "download": "would delete the native library and try to download it",
    "fail": "would fail",
    "exit": "would exit the process",
}


def check_app_id(config: Config) -> Check:
    """AGORA_APP_ID is set and looks like an App ID (the value is not shown)."""
    from recorder.transport.agora.codes import validate_app_id

    try:
        validate_app_id(config.agora_app_id)
    except RecorderError as exc:
        return _fail("agora app id", str(exc))
    return _ok("agora app id", "AGORA_APP_ID is set (32 hexadecimal characters)")


def check_credentials(config: Config) -> Check:
    """How the bot will authenticate: certificate, prebuilt token, or App ID only."""
    if config.agora_app_certificate:
        if len(config.agora_app_certificate) != 32:
            return _fail(
                "agora certificate",
                "AGORA_APP_CERTIFICATE is set but is not 32 characters; copy it again "
                "from the Agora console",
            )
        return _ok("agora certificate", "set: tokens are built and renewed automatically")
    if config.agora_token:
        return _warn(
            "agora certificate",
            "not set; AGORA_TOKEN is used as given and cannot be renewed, so the "
            "recording stops when it expires",
        )
    return _warn(
        "agora certificate",
        "neither AGORA_APP_CERTIFICATE nor AGORA_TOKEN is set: only projects without "
        "an App Certificate can be joined",
    )


def check_token(config: Config) -> Check:
    """A token can be built (certificate) or the prebuilt one fits (channel, uid, expiry)."""
    from recorder.transport.agora.token import build_rtc_token, parse_access_token2

    channel = config.channel or _PROBE_CHANNEL
    if config.agora_token:
        # AccessToken2 strings start with their version, "007" (docs/providers.md,
        # "Agora: tokens"); older token formats cannot be decoded here.
        if not config.agora_token.startswith("007"):
            return _warn("agora token", "AGORA_TOKEN is not an AccessToken2 (007); not checked")
        try:
            token = parse_access_token2(config.agora_token)
            token_channel, token_uid = token.rtc_channel_and_uid()
        except (ValueError, RecorderError):
            return _fail("agora token", "AGORA_TOKEN cannot be decoded; build it again")
        left_s = token.issue_ts + token.expire_s - time.time()
        if left_s <= 0:
            return _fail("agora token", "AGORA_TOKEN has expired; build a fresh one")
        problems = []
        if config.channel and token_channel != config.channel:
            problems.append(f"it is for channel {token_channel!r}, not {config.channel!r}")
        if token_uid not in ("", str(config.bot_uid)):
            problems.append(f"it is for uid {token_uid}, not the bot's uid {config.bot_uid}")
        if problems:
            return _fail("agora token", f"AGORA_TOKEN does not fit: {'; '.join(problems)}")
        return _ok("agora token", f"AGORA_TOKEN fits and expires in {left_s / 60:.0f} min")
    if not config.agora_app_certificate:
        return _warn("agora token", "no token needed for a project without an App Certificate")
    try:
        build_rtc_token(
            config.agora_app_id or "", config.agora_app_certificate, channel, config.bot_uid
        )
    except RecorderError as exc:
        return _fail("agora token", f"cannot build a token: {exc}")
    return _ok("agora token", f"a token can be built for channel {channel!r}, uid {config.bot_uid}")


def check_channel(config: Config) -> Check:
    """AGORA_CHANNEL, if set, is a name Agora accepts (not required: --channel works too)."""
    from recorder.transport.agora.codes import validate_channel_name

    if not config.channel:
        return _warn("agora channel", "AGORA_CHANNEL is not set; pass --channel NAME to join")
    try:
        validate_channel_name(config.channel)
    except RecorderError as exc:
        return _fail("agora channel", str(exc))
    return _ok("agora channel", f"{config.channel!r}, bot uid {config.bot_uid}")


def check_api_key(config: Config) -> Check:
    """ASSEMBLYAI_API_KEY is set (never printed)."""
    if not config.assemblyai_api_key:
        return _fail(
            "assemblyai key",
            "ASSEMBLYAI_API_KEY is not set; put it in the environment or a .env file",
        )
    return _ok("assemblyai key", f"ASSEMBLYAI_API_KEY is set; streaming to {config.streaming_url}")


async def check_database(config: Config) -> Check:
    """The database is reachable and migrated."""
    from storage.db import database_info

    where = mask_url(config.database_url)
    try:
        info = await database_info(config.database_url)
    except RecorderError as exc:
        return _fail("database", str(exc))
    revision, head = str(info.get("revision")), str(info.get("head"))
    if revision == head:
        return _ok(
            "database",
            f"{where} at revision {head}, {plural(int(str(info.get('meetings', 0))), 'meeting')}",
        )
    if config.is_default_database:
        return _warn("database", f"{where} is created and migrated on the first recording")
    return _fail(
        "database",
        f"{where} is at revision {revision}, not {head}; run 'recorder db upgrade --db URL'",
    )


async def check_read_only_sql(config: Config) -> list[Check]:
    """PostgreSQL: the role that keeps 'recorder sql', the API and MCP read-only exists."""
    from storage.bounded import reader_status

    if not config.database_url.startswith("postgresql"):
        return []
    try:
        problem = await reader_status(config.database_url)
    except RecorderError as exc:
        return [_warn("read-only sql", str(exc))]
    if problem is not None:
        return [_warn("read-only sql", problem)]
    return [_ok("read-only sql", "statements run as the read-only role recorder_reader")]


async def check_streaming(config: Config) -> Check:
    """Open one streaming session: Begin, then Terminate; report the billed seconds."""
    from recorder.stt.events import SessionStarted, SessionTerminated
    from recorder.stt.settings import ConnectSettings, RetrySettings
    from recorder.stt.stream import SttStream

    if not config.assemblyai_api_key:
        return _fail("streaming", "skipped: ASSEMBLYAI_API_KEY is not set")
    session = SttStream(
        ConnectSettings(
            url=config.streaming_url,
            api_key=config.assemblyai_api_key,
            speech_model=config.speech_model,
        ),
        retry=RetrySettings(connect_timeout_s=10.0, give_up_s=15.0),
        name="doctor",
    )
    started = time.monotonic()
    try:
        await session.start()
        await session.stop()
        began: SessionStarted | None = None
        billed: float | None = None
        async for event in session.events():
            if isinstance(event, SessionStarted):
                began = event
            elif isinstance(event, SessionTerminated):
                billed = event.session_duration_s
    except RecorderError as exc:
        return _fail("streaming", str(exc))
    finally:
        await session.aclose()
    took = time.monotonic() - started
    session_id = began.id if began is not None else "unknown"
    billed_text = f"{billed:.1f} s billed" if billed is not None else "no Termination received"
    status = _ok if billed is not None else _warn
    return status(
        "streaming",
        f"session {session_id} opened and closed in {took:.1f} s ({billed_text})",
    )


async def run_checks(config: Config | ConfigError, *, online: bool) -> list[Check]:
    """Run every check (``online`` adds a real streaming session).

    Args:
        config: the settings, or why they could not be loaded (then only the
            checks that need no settings run, after one line saying what is wrong).
        online: also open a real streaming session.
    """
    checks: list[Check] = [check_python(), check_agora_sdk(), check_audio_tap()]
    if isinstance(config, ConfigError):
        return [*checks, _fail("settings", str(config))]
    agora: list[Callable[[Config], Check]] = [
        check_app_id,
        check_credentials,
        check_token,
        check_channel,
        check_api_key,
    ]
    checks += [check(config) for check in agora]
    checks.append(await check_database(config))
    if checks[-1].status == "ok":
        checks.extend(await check_read_only_sql(config))
    if online:
        checks.append(await check_streaming(config))
    return checks


_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--online",
    is_flag=True,
    help="Also open one real streaming session (bills a second or two).",
)
@click.option("--channel", help="The channel you will join ($AGORA_CHANNEL).")
@click.option(
    "--stt-url", help="Streaming endpoint override, e.g. an emulator ($RECORDER_STT_URL)."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the checks as a JSON array (name, status, detail, required).",
)
@db_option
def doctor(
    online: bool, channel: str | None, stt_url: str | None, as_json: bool, database_url: str | None
) -> None:
    """Check this machine is ready to record a real meeting.

    One line per check: ok, warn, or FAIL with what to do. Exits non-zero
    when something a real recording needs is missing. Secrets are never shown.

    \b
    Examples:
        recorder doctor
        recorder doctor --online --channel standup
        recorder doctor --json
    """  # noqa: D301 - click needs a real \b to keep example lines
    config: Config | ConfigError
    try:
        config = build_config(database_url=database_url, channel=channel, stt_url=stt_url)
    except ConfigError as exc:  # still report the rest, in the same format
        config = exc
    checks = run(run_checks(config, online=online))
    if as_json:
        echo_json(
            [
                {
                    "name": check.name,
                    "status": check.status,
                    "detail": check.detail,
                    "required": check.is_required,
                }
                for check in checks
            ]
        )
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            click.echo(f"{_MARKS[check.status]}  {check.name:<{width}}  {check.detail}")
    failures = [check for check in checks if check.is_failure]
    if failures:
        click.echo(
            f"{plural(len(failures), 'check')} failed; fix them before 'recorder join'", err=True
        )
        sys.exit(1)
    click.echo("ready to record", err=True)
