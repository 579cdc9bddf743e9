"""What the commands share: context settings, the error boundary, shared options.

Command modules import click, this module, :mod:`recorder.config`,
:mod:`recorder.errors` and pure helpers at load time, and everything else
inside the command function, so ``recorder --help`` loads no database,
network or audio library (tests/test_imports.py checks).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from recorder.config import Config, load_config
from recorder.errors import RecorderError

__all__ = [
    "CONTEXT_SETTINGS",
    "RecorderGroup",
    "build_config",
    "db_option",
    "emulator_option",
    "fail",
    "llm_url_option",
    "run",
]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class _CleanExit(click.ClickException):
    """A RecorderError on its way out: one line on stderr, its own exit code."""

    def __init__(self, error: RecorderError) -> None:
        super().__init__(str(error))
        # click declares exit_code a ClassVar but reads it from the instance.
        self.exit_code = error.exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        """Print ``error: <message>`` on stderr, no usage text and no traceback."""
        click.echo(f"error: {self.format_message()}", err=True)


class RecorderGroup(click.Group):
    """A click group that turns every RecorderError into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a RecorderError leaves as one line and its exit code."""
        try:
            return super().invoke(ctx)
        except RecorderError as exc:
            raise _CleanExit(exc) from exc


def fail(error: RecorderError) -> click.ClickException:
    """Wrap a RecorderError for raising from inside a command callback."""
    return _CleanExit(error)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion, as every command does."""
    import asyncio  # about 30 ms to import: only commands that run pay it, not --help

    return asyncio.run(coroutine)


def db_option(function: F) -> F:
    """The ``--db URL`` option shared by every command that touches the database."""
    return click.option(
        "--db",
        "database_url",
        metavar="URL",
        help=(
            "Database URL (SQLAlchemy async form), e.g. sqlite+aiosqlite:///notes.db or "
            "postgresql+asyncpg://user@host/db. Default: $RECORDER_DATABASE_URL, else a "
            "SQLite file in your user data directory."
        ),
    )(function)


def emulator_option(function: F) -> F:
    """``--emulator URL``: point every AssemblyAI endpoint at one ``recorder emulate``."""
    return click.option(
        "--emulator",
        "emulator_url",
        metavar="URL",
        help=(
            "Point every AssemblyAI endpoint (streaming, Voice Agent, LLM Gateway) at one "
            "'recorder emulate', e.g. http://127.0.0.1:8765 ($RECORDER_EMULATOR). An endpoint's "
            "own override (--stt-url, --llm-url, ...) still wins."
        ),
    )(function)


def llm_url_option(function: F) -> F:
    """``--llm-url URL``: the LLM Gateway base URL override."""
    return click.option(
        "--llm-url",
        metavar="URL",
        help=(
            "LLM Gateway base URL, e.g. an emulator's http://127.0.0.1:8765/v1 "
            "($RECORDER_LLM_URL). Default: https://llm-gateway.assemblyai.com/v1."
        ),
    )(function)


def build_config(**flags: Any) -> Config:
    """Load the Config with these flag values on top of the environment."""
    return load_config(**flags)
