"""``recorder emulate``: serve the local AssemblyAI-compatible emulators until Ctrl+C."""

from __future__ import annotations

import contextlib
import errno
import sys

import click

from recorder.cli.common import CONTEXT_SETTINGS, FiniteFloat, fail, run
from recorder.errors import ConfigError

__all__ = ["emulate"]


# --async-fault's choices: an HTTP status, or a connection dropped without an answer.
_ASYNC_FAULTS = {"429": 429, "500": 500, "503": 503, "504": 504, "drop": 0}


async def _serve(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    realtime_factor: float,
    llm_fault: str | None = None,
    async_fault: str | None = None,
) -> None:
    import asyncio

    from recorder.emulator.batch import BatchBehaviour, BatchEmulator
    from recorder.emulator.llm import LlmBehaviour, LlmGatewayEmulator
    from recorder.emulator.server import serve_emulators

    keys = frozenset(api_keys)
    llm = LlmGatewayEmulator(
        api_keys=keys,
        behaviour=LlmBehaviour(fault=llm_fault) if llm_fault else None,  # type: ignore[arg-type]
    )
    batch = BatchEmulator(
        api_keys=keys,
        behaviour=BatchBehaviour(fault=_ASYNC_FAULTS[async_fault] if async_fault else None),
    )
    try:
        async with serve_emulators(
            host, port, api_keys=keys, realtime_factor=realtime_factor, llm=llm, batch=batch
        ) as server:
            for name, url in server.urls.items():
                click.echo(f"{name}: {url}")
            if "async" in server.urls:  # the EU host's own store (recorder/emulator/batch)
                click.echo(f"async (EU): {server.urls['async']}/eu")
            emulator_url = server.urls["emulator"]
            # One line to copy: streaming, Voice Agent, LLM Gateway and the async API here.
            click.echo(f"export RECORDER_EMULATOR={emulator_url}")
            click.echo(
                f"try: recorder join --transport replay:FILE --emulator {emulator_url} --notes"
            )
            click.echo("press Ctrl+C to stop", err=True)
            await asyncio.Event().wait()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise fail(
                ConfigError(f"port {port} on {host} is in use; pick another with --port")
            ) from exc
        raise fail(ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})")) from exc


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0 picks a free one).",
)
@click.option(
    "api_keys",
    "--api-key",
    multiple=True,
    metavar="KEY",
    help="Accept only this key (repeatable). Default: any non-empty key.",
)
@click.option(
    "--realtime-factor",
    default=1.0,
    show_default=True,
    type=FiniteFloat(min=0, min_open=True, allow_infinity=True),
    help="Accept audio this many times faster than real time (1.0 is the real rule; "
    "inf turns the rule off). Clients replaying with --speed N need at least N.",
)
@click.option(
    "--llm-fault",
    type=click.Choice(["429", "500", "503", "malformed", "truncated"]),
    help="Make every LLM Gateway request fail this way (to try retries and error messages).",
)
@click.option(
    "--async-fault",
    type=click.Choice(list(_ASYNC_FAULTS)),
    help="Make every pre-recorded (async) API request fail this way: an HTTP status, "
    "or 'drop' the connection (to try repair's retries and error messages).",
)
def emulate(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    realtime_factor: float,
    llm_fault: str | None,
    async_fault: str | None,
) -> None:
    """Serve local AssemblyAI-compatible emulators, no account needed.

    All on one port: the streaming emulator speaks the Universal-Streaming v3
    protocol at /v3/ws and hears the synthetic tone-code speech of `recorder
    demo` and the replay transport; the Voice Agent emulator, for spoken
    recaps, answers at /v1/ws; the LLM Gateway emulator, for written notes, at
    /v1/chat/completions (its "model" extracts commitments, agreements and
    unanswered questions); the pre-recorded (async) API emulator, which
    repairs gaps, at /v2 (uploads, transcripts, polling, webhooks). It logs
    one line per session: id, audio seconds, billed seconds and close code.
    It prints the one line that points every command at it:
    RECORDER_EMULATOR=http://HOST:PORT (or --emulator URL).

    \b
    Example:
        recorder emulate --port 8765 --api-key dev-key
        # then, in another shell, with ASSEMBLYAI_API_KEY=dev-key:
        export RECORDER_EMULATOR=http://127.0.0.1:8765
        recorder join --transport replay:meeting.json --notes
        recorder emulate --llm-fault 503     # every notes request fails
        recorder emulate --async-fault 503   # every repair request fails
    """  # noqa: D301 - click's no-rewrap marker must be a real backspace, not r"\b"
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    emulator_log = logging.getLogger("recorder.emulator")
    emulator_log.addHandler(handler)
    emulator_log.setLevel(logging.INFO)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run(_serve(host, port, api_keys, realtime_factor, llm_fault, async_fault))
        click.echo("stopped", err=True)
    finally:
        emulator_log.removeHandler(handler)
