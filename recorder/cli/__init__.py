"""The ``recorder`` command line: a click group and nothing more.

Each command lives in a small module of this package and stays thin: build the
Config, run one coroutine, and let :func:`main` turn any RecorderError into one
line on stderr with its exit code.
"""

from __future__ import annotations

import sys

import click

from recorder import __version__
from recorder.cli.common import CONTEXT_SETTINGS, RecorderGroup, no_color_option, verbose_option
from recorder.cli.db import db
from recorder.cli.demo import demo
from recorder.cli.doctor import doctor
from recorder.cli.emulate import emulate
from recorder.cli.export import export
from recorder.cli.fleet import cancel, jobs, record, stop, worker
from recorder.cli.join import join
from recorder.cli.notes import ask, notes
from recorder.cli.query import meetings, show
from recorder.cli.repair import repair, retranscribe
from recorder.cli.search import search
from recorder.cli.service import mcp, serve, tokens, webhooks
from recorder.cli.speakers import speakers
from recorder.cli.sql import sql

__all__ = ["cli", "main"]


@click.group(cls=RecorderGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="recorder")
@verbose_option
@no_color_option
def cli() -> None:
    """Record Agora meetings as speaker-attributed transcripts in SQL.

    \b
    Try it with no account:
        recorder demo
    Record a real channel (credentials in the environment or .env):
        recorder join --channel standup
    Then read, export and search what was said:
        recorder meetings
        recorder export latest -o standup.html
        recorder search "billing export"
    Write notes (summary, decisions, action items) and ask questions:
        recorder notes latest
        recorder ask latest "Who owns the budget?"
    """


cli.add_command(db)
for _command in (export, meetings, show, search, speakers, sql):
    cli.add_command(_command)
cli.add_command(emulate)
cli.add_command(join)
cli.add_command(demo)
cli.add_command(doctor)
for _command in (worker, record, jobs, stop, cancel, serve, mcp, tokens, webhooks):
    cli.add_command(_command)
cli.add_command(notes)
cli.add_command(ask)
cli.add_command(repair)
cli.add_command(retranscribe)


def main() -> None:
    """Entry point of the ``recorder`` console script."""
    sys.exit(cli.main(prog_name="recorder", standalone_mode=True))
