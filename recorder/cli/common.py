"""What the commands share: context settings, the error boundary, shared options.

Command modules import click, this module, :mod:`recorder.config`,
:mod:`recorder.errors` and pure helpers at load time, and everything else
inside the command function, so ``recorder --help`` loads no database,
network or audio library (tests/test_imports.py checks).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from recorder.config import MAX_UID, Config, load_config
from recorder.errors import ConfigError, RecorderError, UsageError

__all__ = [
    "CONTEXT_SETTINGS",
    "Duration",
    "FiniteFloat",
    "MAX_DURATION_S",
    "ROW_ID",
    "RecorderGroup",
    "Text",
    "build_config",
    "db_option",
    "emulator_option",
    "fail",
    "llm_url_option",
    "no_color_option",
    "parse_duration",
    "read_names",
    "run",
    "split_keyterms",
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


#: Errors of a write that did not happen: no space, over quota, too large, I/O error.
_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


class _OneLineUsage(click.UsageError):
    """A bad flag or value: one line on stderr naming the command's --help, exit code 2."""

    def show(self, file: Any = None) -> None:
        """Print ``error: <message> (see 'recorder CMD --help')``, without the usage block."""
        message = self.format_message()
        message = message[:1].lower() + message[1:].rstrip(".")
        where = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"error: {message}{where}", err=True)


class RecorderGroup(click.Group):
    """A click group that turns every RecorderError and bad flag into one line and an exit code.

    Every command added to it also takes ``-v`` and ``--no-color`` after its name,
    and a closed pipe (``recorder show 1 | head -1``) ends it quietly with exit 0.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register a command, giving it the shared ``-v`` and ``--no-color`` options."""
        _add_shared_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a RecorderError or a bad value leaves as one line and its exit code."""
        try:
            return super().invoke(ctx)
        except RecorderError as exc:
            raise _CleanExit(exc) from exc
        except BrokenPipeError:
            _quiet_closed_pipe()
            raise click.exceptions.Exit(0) from None
        except click.UsageError as exc:
            raise _one_line(exc) from exc
        except OSError as exc:
            raise _write_failure(exc) from None

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own flags; a bad one is one line too."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from exc
        except BrokenPipeError:  # --help or --version into a closed pipe
            _quiet_closed_pipe()
            raise click.exceptions.Exit(0) from None
        except OSError as exc:  # --help or --version into a full device
            raise _write_failure(exc) from None


def _write_failure(error: OSError) -> click.ClickException:
    """A write that did not happen, as one line; any other OSError is a bug (re-raised).

    Output to a full disk or device (``> /dev/full``) or a failing drive means
    the command did not do what it says. Commands wrap their own files' errors
    in RecorderError, so what reaches here is a write to standard output.
    """
    if error.errno not in _WRITE_FAILURES:
        raise error
    _quiet_closed_pipe()  # the interpreter's final flush would fail again
    where = repr(error.filename) if error.filename else "standard output"
    return _CleanExit(RecorderError(f"cannot write to {where}: {error.strerror or error}"))


def _one_line(error: click.UsageError) -> click.UsageError:
    """The usage error as one line, except help asked for by giving no arguments."""
    if isinstance(error, _OneLineUsage | click.exceptions.NoArgsIsHelpError):
        return error
    return _OneLineUsage(" ".join(error.format_message().split()), error.ctx)


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
            "Point every AssemblyAI endpoint (streaming, Voice Agent, LLM Gateway, the "
            "pre-recorded API that repairs gaps) at one "
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


# -- values every command validates the same way ------------------------------------

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "use e.g. 90s, 10m, 1h or 1h30m (a bare number is seconds)"
#: The longest duration any option takes: a week (a larger value is a typo).
MAX_DURATION_S = 7 * 24 * 3600.0


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h``, ``1h30m`` (or ``500ms``) into seconds.

    Args:
        text: the duration as the user wrote it.

    Returns:
        Seconds, positive and finite.

    Raises:
        ValueError: not a positive duration (the message says what is expected).
    """
    compact = text.strip().lower()
    total = 0.0
    if _NUMBER.fullmatch(compact):
        total = float(compact)
    elif _DURATION.fullmatch(compact):
        total = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(compact))
    if 0 < total < math.inf:
        return total
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise ValueError(f"{shown!r} is not a duration; {_DURATION_HINT}")


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}s"


class Duration(click.ParamType[float]):
    """A duration: ``90``, ``90s``, ``15m``, ``1h`` or ``1h30m``, handed on in seconds.

    Args:
        min_s: the shortest duration accepted.
        max_s: the longest duration accepted.
    """

    name = "duration"

    def __init__(self, *, min_s: float = 0.0, max_s: float = MAX_DURATION_S) -> None:
        self.min_s = min_s
        self.max_s = max_s

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the value or fail with one line saying what is expected."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)  # a default
            if not math.isfinite(seconds) or seconds <= 0:
                self.fail(f"{value!r} is not a duration; {_DURATION_HINT}", param, ctx)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if seconds < self.min_s:
            self.fail(
                f"{value!r} is too short; use at least {_seconds_text(self.min_s)}", param, ctx
            )
        if seconds > self.max_s:
            self.fail(f"{value!r} is too long; use at most {_seconds_text(self.max_s)}", param, ctx)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """Shown in usage lines."""
        return "DURATION"


class FiniteFloat(click.FloatRange):
    """A number in a range that is never ``nan`` (nor ``inf`` unless allowed).

    click's ``FloatRange`` lets ``nan`` through (every comparison with it is
    false); this refuses it with one line.
    """

    def __init__(
        self,
        min: float | None = None,  # noqa: A002 - click's own parameter names
        max: float | None = None,  # noqa: A002
        *,
        min_open: bool = False,
        max_open: bool = False,
        allow_infinity: bool = False,
    ) -> None:
        super().__init__(min, max, min_open=min_open, max_open=max_open)
        self.allow_infinity = allow_infinity

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the number; refuse ``nan`` and, unless allowed, ``inf``."""
        number = float(super().convert(value, param, ctx))
        if math.isnan(number) or (math.isinf(number) and not self.allow_infinity):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Text(click.ParamType[str]):
    """Text that can be stored and sent: UTF-8, without control characters.

    An argument holding bytes that are not UTF-8 reaches Python as lone
    surrogates, which no database, URL or terminal can take.
    """

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Return the text, or fail with one line naming the first bad character."""
        text = str(value)
        for char in text:
            if 0xD800 <= ord(char) <= 0xDFFF:
                self.fail(f"{ascii(text)} holds bytes that are not UTF-8 text", param, ctx)
            if not char.isprintable() and char not in " \t":
                self.fail(f"{ascii(text)} holds a control character {ascii(char)}", param, ctx)
        return text


# -- inputs of the recording commands (join, demo, record) ------------------------------


def read_names(path: Path | None) -> dict[int, str]:
    """Read ``--speaker-names``: JSON {"101": "Alice"} or lines ``101=Alice``.

    Raises:
        ConfigError: the file cannot be read, or an entry is not a uid and a name.
    """
    if path is None:
        return {}
    where = f"--speaker-names file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from exc
    items: list[tuple[Any, Any]]
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        items = []
        for line in text.splitlines():
            if line.strip():
                uid, equals, name = line.partition("=")
                if not equals:
                    raise ConfigError(
                        f"{where}: expected lines like 101=Alice, got {line!r}"
                    ) from None
                items.append((uid, name))
    else:
        if not isinstance(data, dict):
            raise ConfigError(f'{where}: expected a JSON object like {{"101": "Alice"}}')
        items = list(data.items())
    names: dict[int, str] = {}
    for uid_text, name in items:
        uid_text = str(uid_text).strip()
        if not (uid_text.isascii() and uid_text.isdigit()) or not 0 < int(uid_text) <= MAX_UID:
            raise ConfigError(f"{where}: {uid_text!r} is not a uid (1 to {MAX_UID})")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: the name for uid {uid_text} must be non-empty text")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"{where}: the name for uid {uid_text} holds an invalid character"
            ) from None
        names[int(uid_text)] = name.strip()
    return names


#: The service takes at most 100 keyterms (docs/providers.md, "Streaming: connecting").
_MAX_KEYTERMS = 100


def split_keyterms(keyterms: str) -> tuple[str, ...]:
    """``--keyterms a,b`` as a tuple of non-empty terms (at most the service's limit)."""
    terms = tuple(k.strip() for k in keyterms.split(",") if k.strip())
    if len(terms) > _MAX_KEYTERMS:
        raise UsageError(
            f"--keyterms has {len(terms)} terms; the service takes at most {_MAX_KEYTERMS}"
        )
    return terms


#: A database row id: 1 up to the largest integer SQLite and PostgreSQL ``BIGINT`` hold.
ROW_ID = click.IntRange(1, 2**63 - 1)
