"""Every export format on records built directly: golden files, escaping, outside parsers.

Regenerate the golden files after an intended change with
``RECORDER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_export_formats.py`` and
review the diff.
"""

from __future__ import annotations

import html.parser
import io
import json
import os
from pathlib import Path

import pytest
import srt
import webvtt
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from recorder.errors import UsageError
from recorder.export.escape import clean_text, escape_markdown
from recorder.export.exporter import FORMATS, format_for_path, parse_format
from recorder.export.subtitles import MAX_CUE_MS, MAX_LINE_CHARS, MAX_LINES, split_turn
from recorder.export.views import Speakers, SpeakerView, TurnView
from tests.support.export_data import golden_meeting, make_meeting, make_turn, render

GOLDEN = Path(__file__).parent / "golden"
# Read before conftest's autouse fixture clears RECORDER_* variables.
REGENERATE = os.environ.get("RECORDER_REGEN_GOLDEN") == "1"

HOSTILE = (
    "<script>window.pwned=1</script> </v> --> **bold** _it_ [link](http://x) # h "
    "`code` | pipe & &amp; $x$ ~~s~~ {\\an8} \x1b[31mred\x00\x07 \u202eevil \r\n2. list"
)


# -- golden files ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_golden(fmt: str) -> None:
    output = await render(golden_meeting(), fmt)
    path = GOLDEN / f"meeting.{fmt}"
    if REGENERATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(output, encoding="utf-8", newline="")
    assert path.exists(), f"{path} is missing; run with RECORDER_REGEN_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert output == expected, f"{fmt} export differs from {path}; regenerate if intended"


async def test_golden_meeting_covers_the_cases() -> None:
    meeting = golden_meeting()
    assert len(meeting.participants) == 3
    assert any(p.display_name is None for p in meeting.participants)
    assert any(t.text == "" for t in meeting.turns)
    assert any(not t.text.isascii() for t in meeting.turns)
    assert meeting.turns[-1].start_ms > 7_000_000  # a two-hour span
    assert [n.kind for n in meeting.notes] == ["recap"]


# -- HTML -----------------------------------------------------------------------------


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self.urls: list[str] = []
        self._in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def _hostile_meeting():
    turns = [
        make_turn(1, 101, 1000, 4000, HOSTILE, name="Eve </v><b>"),
        make_turn(2, 202, 5000, 9000, "# not a heading", name="*Mallory* | x"),
    ]
    return make_meeting([(101, "Eve </v><b>"), (202, "*Mallory* | x")], turns)


async def test_html_is_self_contained_and_escapes_everything() -> None:
    page = await render(_hostile_meeting(), "html")
    parser = _Collector()
    parser.feed(page)
    assert parser.urls == [], "the page must not fetch anything"
    assert parser.tags.count("script") == 1  # only our own inline script
    assert "window.pwned" not in "".join(parser.scripts)
    assert "<script>window.pwned" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert "<b>" not in page.split("<body>")[1].split("<script>")[0]
    text = "".join(parser.text)
    assert clean_text(HOSTILE) in text
    for bad in ("\x1b", "\x00", "\x07", "\u202e", "\r"):
        assert bad not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


async def test_html_script_hash_matches_the_inline_script() -> None:
    import base64
    import hashlib
    import re

    page = await render(golden_meeting(), "html")
    script = page.split("<script>")[1].split("</script>")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert re.search(rf"script-src 'sha256-{re.escape(digest)}'", page)


async def test_html_groups_consecutive_turns_of_one_speaker() -> None:
    page = await render(golden_meeting(), "html")
    transcript = page.split('id="transcript"')[1]
    # Alice's first two turns share a section; 9 turns make 8 runs.
    assert transcript.count('<section class="run') == 8
    first_run = transcript.split("</section>")[0]
    assert first_run.count('class="turn"') == 2


async def test_html_colours_are_deterministic_per_speaker() -> None:
    page = await render(golden_meeting(), "html")
    assert '<section class="run s0" data-uid="101">' in page
    assert '<section class="run s1" data-uid="202">' in page
    assert '<section class="run s2" data-uid="303">' in page
    assert page == await render(golden_meeting(), "html")


# -- Markdown -------------------------------------------------------------------------


def _rendered_text(markdown: str) -> str:
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(markdown)
    parts: list[str] = []
    for token in tokens:
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
    return "".join(parts)


@given(st.text(max_size=80))
@example("*a* _b_ `c` [d](e) ~~f~~ $g$ <h> &amp; \\* x|y")
@example("# h")
@example("1. item")
@example("- item")
@example("---")
@example("> quote")
@settings(max_examples=150, deadline=None)
def test_markdown_escape_renders_the_literal_text(text: str) -> None:
    cleaned = clean_text(text)
    html_out = (
        MarkdownIt("commonmark")
        .enable("table")
        .enable("strikethrough")
        .render(f"x {escape_markdown(cleaned)}")
    )
    assert "<em>" not in html_out and "<strong>" not in html_out and "<a " not in html_out
    assert "<code>" not in html_out and "<s>" not in html_out
    assert _rendered_text(f"x {escape_markdown(cleaned)}") == f"x {cleaned}".strip()


async def test_markdown_escapes_untrusted_text() -> None:
    markdown = await render(_hostile_meeting(), "md")
    html_out = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<script>" not in html_out
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html_out
    assert "<em>" not in html_out.split("Transcript")[1]
    assert "<a href" not in html_out
    assert html_out.count("<h1>") == 1  # "# not a heading" stayed text
    assert "\x1b" not in markdown and "\x00" not in markdown and "\u202e" not in markdown
    # Table rows keep their four cells despite a "|" in a name.
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 3 for line in table), table


# -- plain text -----------------------------------------------------------------------


async def test_text_is_one_line_per_turn() -> None:
    text = await render(_hostile_meeting(), "txt")
    turn_lines = [line for line in text.splitlines() if line.startswith("[")]
    assert len(turn_lines) == 2
    assert turn_lines[0].startswith("[00:00:01] Eve </v><b>: <script>")
    for bad in ("\x1b", "\x00", "\x07", "\u202e", "\r"):
        assert bad not in text


# -- SRT and WebVTT -------------------------------------------------------------------


async def test_srt_parses_and_cues_are_short() -> None:
    subtitles = list(srt.parse(await render(golden_meeting(), "srt")))
    assert len(subtitles) >= 9
    starts = [s.start for s in subtitles]
    assert starts == sorted(starts)
    for cue in subtitles:
        assert cue.end > cue.start
        assert (cue.end - cue.start).total_seconds() * 1000 <= MAX_CUE_MS
        assert len(cue.content.split("\n")) <= MAX_LINES
    assert subtitles[0].content.startswith("Alice Martín: Good morning")


async def test_vtt_parses_with_voices_in_order() -> None:
    captions = webvtt.from_buffer(io.StringIO(await render(golden_meeting(), "vtt")))
    assert len(captions) >= 9
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts)
    for caption in captions:
        assert caption.end_in_seconds > caption.start_in_seconds
        assert caption.end_in_seconds - caption.start_in_seconds <= MAX_CUE_MS / 1000
        assert len(caption.lines) <= MAX_LINES
    assert captions[0].voice == "Alice Martín"
    assert any(c.voice == "303" for c in captions)


async def test_subtitles_escape_untrusted_text() -> None:
    vtt_text = await render(_hostile_meeting(), "vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt_text))
    payload = "\n".join(c.raw_text for c in captions)
    assert "<script>" not in payload and "</v> " not in payload.replace("</v>\n", "")
    assert all(line.count("-->") == 1 for line in vtt_text.splitlines() if "-->" in line)
    assert "<v Eve &lt;/v&gt;&lt;b&gt;>" in vtt_text
    joined = " ".join(c.text.replace("\n", " ") for c in captions if c.voice.startswith("Eve"))
    assert "&lt;script&gt;" in joined or "<script>" in joined  # entities or decoded, never a tag

    srt_text = await render(_hostile_meeting(), "srt")
    subtitles = list(srt.parse(srt_text))
    contents = "\n".join(s.content for s in subtitles)
    assert "<" not in contents and ">" not in contents and "{" not in contents
    assert "script" in contents and "‹/v›" in contents
    for text in (vtt_text, srt_text):
        for bad in ("\x1b", "\x00", "\x07", "\u202e", "\r"):
            assert bad not in text


def _view(text: str, start_ms: int, end_ms: int, *, words: bool = True) -> TurnView:
    turn = make_turn(1, 101, start_ms, end_ms, text, words=words)
    return TurnView(
        id=1,
        speaker=SpeakerView(uid=101, name="A", has_name=True, index=0),
        start_ms=start_ms,
        end_ms=end_ms,
        text=clean_text(text),
        words=turn.words,
        is_group_start=True,
        is_group_end=True,
    )


@given(
    prefix=st.sampled_from(["", "Al: ", "A much longer speaker name: "]),
    words=st.lists(
        st.text(st.characters(categories=["L", "N", "P"]), min_size=1, max_size=60), max_size=60
    ),
    duration_ms=st.integers(0, 120_000),
    has_words=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_cues_respect_limits_and_keep_every_word(
    prefix: str, words: list[str], duration_ms: int, has_words: bool
) -> None:
    text = " ".join(words)
    view = _view(text, 10_000, 10_000 + duration_ms, words=has_words)
    cues = split_turn(view, prefix=prefix)
    tokens = [t for t in clean_text(text).split(" ") if t]
    shown = "".join("".join(line.replace(" ", "") for line in c.lines) for c in cues)
    assert shown == "".join(prefix.replace(" ", "") + "".join(c_words(c, prefix)) for c in cues)
    assert "".join("".join(c_words(c, prefix)) for c in cues) == "".join(tokens)
    for cue in cues:
        assert 1 <= len(cue.lines) <= MAX_LINES
        assert cue.lines[0].startswith(prefix.rstrip())
        assert all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
        assert cue.end_ms > cue.start_ms
        # A cue spans at most MAX_CUE_MS unless one word alone is longer.
        assert cue.end_ms - cue.start_ms <= max(MAX_CUE_MS, duration_ms)
    assert [c.start_ms for c in cues] == sorted(c.start_ms for c in cues)


def c_words(cue, prefix: str) -> list[str]:
    """The words of a cue without its speaker prefix."""
    text = "\n".join(cue.lines)[len(prefix.rstrip()) :]
    return text.split()


def test_cues_split_at_word_timings_within_six_seconds() -> None:
    view = _view(" ".join(f"w{i}" for i in range(30)), 0, 20_000)
    cues = split_turn(view)
    assert len(cues) >= 4
    word_starts = {w.start_ms for w in view.words}
    for cue in cues:
        assert cue.start_ms in word_starts
        assert cue.end_ms - cue.start_ms <= MAX_CUE_MS


def test_empty_turns_make_no_cues() -> None:
    assert split_turn(_view("", 0, 1000)) == []


# -- JSON -----------------------------------------------------------------------------


def _paths(value: object, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if prefix.endswith("meta"):
                continue
            found.add(f"{prefix}.{key}".lstrip("."))
            found |= _paths(item, f"{prefix}.{key}".lstrip("."))
    elif isinstance(value, list):
        for item in value:
            found |= _paths(item, prefix)
    return found


async def test_json_schema_documents_every_field() -> None:
    from recorder.export.json_format import SCHEMA

    data = json.loads(await render(golden_meeting(), "json"))
    assert data["schema_version"] == 1
    assert list(data) == [
        "schema_version",
        "meeting",
        "participants",
        "stream_sessions",
        "notes",
        "gaps",
        "meeting_notes",
        "turns",
    ]
    sections = {
        "gaps": "\ngap (",
        "meeting": "\nmeeting:",
        "participants": "\nparticipant:",
        "stream_sessions": "\nstream_session (",
        "notes": "\nnote:",
        "turns": "\nturn:",
        "turns.words": "\nword:",
    }
    for path in sorted(_paths(data)):
        *parents, field = path.split(".")
        if not parents:
            assert f"\n    {field} " in SCHEMA, f"top-level {field!r} is not in SCHEMA"
            continue
        section = SCHEMA.split(sections[".".join(parents)])[1].split("\n\n")[0]
        assert f"\n    {field} " in section, f"{path} is not documented in SCHEMA"


async def test_json_round_trips_to_the_same_records() -> None:
    from tests.support.json_reader import meeting_from_json

    meeting = golden_meeting()
    data = json.loads(await render(meeting, "json"))
    assert meeting_from_json(data) == meeting


async def test_json_keeps_text_exactly() -> None:
    from tests.support.json_reader import meeting_from_json

    meeting = _hostile_meeting()
    text = await render(meeting, "json")
    assert "\u2028" not in text
    assert meeting_from_json(json.loads(text)).turns[0].text == HOSTILE


# -- formats --------------------------------------------------------------------------


def test_format_names_and_extensions() -> None:
    assert parse_format("Markdown") == "md"
    assert parse_format(".HTML") == "html"
    assert format_for_path("notes/standup.vtt") == "vtt"
    assert format_for_path("x.htm") == "html"
    assert format_for_path("x.pdf") is None
    with pytest.raises(UsageError, match="unknown export format 'pdf'"):
        parse_format("pdf")


async def test_a_speaker_missing_from_participants_still_renders() -> None:
    turns = [make_turn(1, 555, 0, 1000, "hello", name=None)]
    meeting = make_meeting([], turns)
    for fmt in FORMATS:
        assert "555" in await render(meeting, fmt)
    assert Speakers([]).get(555).name == "555"


async def test_a_meeting_without_turns_renders() -> None:
    meeting = make_meeting([(101, "Alice")], [], duration_ms=None)
    assert "Nothing was said" in await render(meeting, "html")
    assert "Nothing was said" in await render(meeting, "md")
    assert list(srt.parse(await render(meeting, "srt"))) == []
    assert len(webvtt.from_buffer(io.StringIO(await render(meeting, "vtt")))) == 0
    assert json.loads(await render(meeting, "json"))["turns"] == []


@given(st.text(max_size=60), st.booleans())
@settings(max_examples=200, deadline=None)
def test_clean_text_fast_path_agrees_with_the_full_cleaning(text: str, keep: bool) -> None:
    # A trailing control character forces the full path; it must give the same result.
    assert clean_text(text, keep_newlines=keep) == clean_text(text + "\x00", keep_newlines=keep)
    cleaned = clean_text(text, keep_newlines=keep)
    assert clean_text(cleaned, keep_newlines=keep) == cleaned
    assert not any(ord(c) < 32 and c != "\n" for c in cleaned)
    assert "\n" not in cleaned or keep


async def test_overlapping_turns_give_cues_in_start_order() -> None:
    turns = [
        make_turn(1, 101, 0, 20_000, " ".join(f"a{i}" for i in range(40))),
        make_turn(2, 202, 3_000, 4_000, "short interjection"),
        make_turn(3, 303, 7_000, 9_000, "another one"),
    ]
    meeting = make_meeting([(101, "A"), (202, "B"), (303, "C")], turns)
    captions = webvtt.from_buffer(io.StringIO(await render(meeting, "vtt")))
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts)
    assert [c.voice for c in captions][:3] == ["A", "B", "A"]


@given(
    text=st.text(min_size=1, max_size=120),
    name=st.one_of(st.none(), st.text(max_size=20)),
)
@example(text="0" * 85, name=None)  # once split into 4 SRT cues and 3 WebVTT ones
@settings(max_examples=60, deadline=None)
def test_any_text_gives_valid_files_in_every_format(text: str, name: str | None) -> None:
    import asyncio

    turns = [
        make_turn(1, 101, 1000, 9000, text, name=name),
        make_turn(2, 202, 2000, 3000, "ok then", name="B"),
    ]
    meeting = make_meeting([(101, name), (202, "B")], turns)
    out = {fmt: asyncio.run(render(meeting, fmt)) for fmt in FORMATS}
    cleaned = clean_text(text)
    words = [w for w in cleaned.split(" ") if w]
    # SRT and WebVTT: parse, and every word of the turn is in some cue, in order.
    subtitles = list(srt.parse(out["srt"]))
    captions = webvtt.from_buffer(io.StringIO(out["vtt"]))
    # SRT's name prefix takes room on the first line, so it may need more cues.
    assert len(subtitles) >= len(captions) >= 1 + bool(words)
    # (webvtt-py leaves character references in voice names as they are)
    voices = {html.unescape(c.voice) for c in captions}
    assert voices <= {"B", clean_text(name or "") or "101"}
    # HTML: one turn paragraph each, the text intact, no element from the transcript.
    parser = _Collector()
    parser.feed(out["html"])
    assert parser.tags.count("script") == 1 and parser.urls == []
    if cleaned:
        assert cleaned in "".join(parser.text)
    # Markdown: the text renders literally.
    if cleaned:
        assert cleaned in _rendered_text(out["md"]).replace("\n", " ") or "\n" in cleaned
    # Plain text: one line per turn.
    assert sum(line.startswith("[00:00:0") for line in out["txt"].splitlines()) == 2
    # JSON: exact.
    assert json.loads(out["json"])["turns"][0]["text"] == text
