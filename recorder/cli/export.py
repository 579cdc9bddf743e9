"""``recorder export``: write one meeting as HTML, Markdown, JSON, text, SRT or WebVTT.

The work is :func:`recorder.export.files.export_meeting`; this module is the
click adapter, and imports the exporter only when the command runs so that
``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run

__all__ = ["export"]

# recorder.export.exporter.FORMATS, spelled out: importing it for --help would load Jinja
# and SQLAlchemy (the docstring below lists them too).
_FORMATS_HELP = "html, md, json, txt, srt, vtt"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING")
@click.option(
    "-f",
    "--format",
    "fmt",
    metavar="FORMAT",
    help=f"One of {_FORMATS_HELP}. Default: from the -o extension, else md.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write to FILE instead of stdout.",
)
@click.option("--channel", metavar="NAME", help="With 'latest': the latest meeting of NAME.")
@click.option(
    "--revision",
    type=click.IntRange(min=1),
    help="Export this transcript revision (default: the latest; see 'recorder retranscribe').",
)
@db_option
def export(
    meeting: str,
    fmt: str | None,
    output: Path | None,
    channel: str | None,
    revision: int | None,
    database_url: str | None,
) -> None:
    """Export a meeting (html, md, json, txt, srt, vtt).

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. HTML is one
    self-contained page; JSON keeps everything (schema_version 1); SRT and
    WebVTT are subtitles cut at word timings. Stretches nothing could
    transcribe are listed as gaps; turns repaired from the kept audio are marked.

    \b
    Examples:
        recorder export latest -o standup.html
        recorder export 1 --format json > meeting-1.json
        recorder export latest --channel standup -f vtt -o standup.vtt
    """
    from recorder.export.files import choose_format, export_meeting

    config = build_config(database_url=database_url)
    chosen = choose_format(fmt, output)  # fail on a bad format before touching the database
    price = config.price_per_hour
    if price is None:
        from recorder.stt.price import list_price_per_hour

        price = list_price_per_hour(config.speech_model)
    run(
        export_meeting(
            config.database_url,
            meeting,
            output,
            fmt=chosen,
            channel=channel,
            price_per_hour=price,
            revision=revision,
        )
    )
    if output is not None and str(output) != "-":
        click.echo(f"wrote {output} ({chosen})", err=True)
