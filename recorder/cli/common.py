"""What the commands share: context settings, the error boundary, shared options.

Command modules import click, this module, :mod:`recorder.config`,
:mod:`recorder.errors` and pure helpers at load time, and everything else
inside the command function, so ``recorder --help`` loads no database,
network or audio library (tests/test_imports.py checks).
"""

from __future__ import annotations

import os
import sys
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
    "fail",
    "no_color_option",
    "run",
    "use_colour",
    "verbose_option",
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


def _set_verbosity(ctx: click.Context, param: click.Parameter, count: int) -> None:
    """``-v``: log on stderr (info; ``-vv`` debug), wherever it is on the command line."""
    if not count:
        return
    import logging

    level = logging.DEBUG if count > 1 else logging.INFO
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(min(level, root.level or logging.WARNING))


def _set_no_colour(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--no-color`` or a non-empty ``$NO_COLOR`` (https://no-color.org): plain text."""
    if value or os.environ.get("NO_COLOR"):
        # click.echo strips styles when the context says so; child contexts inherit it.
        ctx.color = False


def verbose_option(function: F) -> F:
    """``-v/--verbose``, accepted before or after the command name."""
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        is_eager=True,
        callback=_set_verbosity,
        help="Log what happens on stderr (-v: info, -vv: debug).",
    )(function)


def no_color_option(function: F) -> F:
    """``--no-color``: no colours even on a terminal (as ``NO_COLOR=1``)."""
    return click.option(
        "--no-color",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_no_colour,
        help="No colours, even on a terminal (as NO_COLOR=1).",
    )(function)


def use_colour() -> bool:
    """Whether to style output: stdout is a terminal, and neither NO_COLOR nor --no-color."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.color is not None:
        return ctx.color
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _add_shared_options(command: click.Command) -> None:
    taken = {opt for param in command.params for opt in param.opts}
    for decorator, flag in ((verbose_option, "-v"), (no_color_option, "--no-color")):
        if flag not in taken:
            decorator(command)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_shared_options(sub)


def _quiet_closed_pipe() -> None:
    """The reader went away (``| head``): exit 0 without a word, like other tools."""
    # Python docs, "Note on SIGPIPE": point stdout at devnull so the final flush is silent.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests)
        pass


class RecorderGroup(click.Group):
    """A click group that turns every RecorderError into one line and an exit code.

    Every command added to it also takes ``-v`` and ``--no-color`` after its name,
    and a closed pipe (``recorder show 1 | head -1``) ends it quietly with exit 0.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register a command, giving it the shared ``-v`` and ``--no-color`` options."""
        _add_shared_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a RecorderError leaves as one line and its exit code."""
        try:
            return super().invoke(ctx)
        except RecorderError as exc:
            raise _CleanExit(exc) from exc
        except BrokenPipeError:
            _quiet_closed_pipe()
            raise click.exceptions.Exit(0) from None


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


def build_config(**flags: Any) -> Config:
    """Load the Config with these flag values on top of the environment."""
    return load_config(**flags)
