"""Cleaning and escaping of untrusted transcript text, one function per output format.

Transcripts, speaker names and notes are untrusted: anyone in the channel can
say (or be misrecognised as saying) ``<script>``, and display names are typed
by users. Every export passes them through one of these functions.
"""

from __future__ import annotations

import re

__all__ = [
    "clean_text",
    "escape_markdown",
    "escape_markdown_block",
    "escape_srt",
    "escape_vtt",
]

# C0 and C1 controls (tab and newline are handled first), DEL, and the bidi
# embedding/override/isolate controls that can make text read differently
# from what it is ("Trojan Source", CVE-2021-42574). Zero-width joiners stay:
# emoji sequences need them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile("\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]")
_SPACES = re.compile("[ \t]+")
# Anything clean_text would change besides the outer strip(); most text has none.
_NEEDS_CLEANING = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]|  ")


def clean_text(text: str, *, keep_newlines: bool = False) -> str:
    r"""Remove control characters and normalise whitespace.

    Args:
        text: untrusted text.
        keep_newlines: keep line breaks (as ``\n``; notes are multi-line);
            otherwise they become spaces so one turn stays one line.

    Returns:
        The text without control characters, runs of blanks collapsed, and
        without leading or trailing whitespace.
    """
    if _NEEDS_CLEANING.search(text) is None:
        return text.strip()  # the fast path: exports clean 100,000s of turns
    text = _NEWLINES.sub("\n" if keep_newlines else " ", text)
    text = _CONTROL.sub("", text.replace("\t", " "))
    if keep_newlines:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        return "\n".join(lines).strip("\n")
    return _SPACES.sub(" ", text).strip()


# Characters with inline meaning in CommonMark/GFM: emphasis, code, links (with [ and ]
# escaped, "(" and "!" cannot start one),
# tables, strikethrough, GitHub math ($) and the backslash itself.
_MD_INLINE = re.compile(r"([\\`*_\[\]|~$])")
# Constructs that only count at the start of a line: headings, list items,
# thematic breaks and setext underlines (``>`` block quotes are entities).
_MD_LINE_MARK = re.compile(r"^([#+=-])")
_MD_ORDERED = re.compile(r"^(\d+)([.)])")


def _escape_line_start(line: str) -> str:
    line = _MD_LINE_MARK.sub(r"\\\1", line)
    return _MD_ORDERED.sub(r"\1\\\2", line)


_MD_ANY = re.compile(r"[\\`*_\[\]|~$&<>\n]|^[#+=-]|^\d+[.)]")


def escape_markdown(text: str) -> str:
    """Escape untrusted text for Markdown (GitHub-flavoured).

    HTML is neutralised with entities (``<`` can start raw HTML in Markdown)
    and Markdown syntax with backslashes, so the text renders literally.

    Args:
        text: cleaned text (see :func:`clean_text`); may contain newlines.

    Returns:
        Markdown source that renders as exactly ``text``.
    """
    if _MD_ANY.search(text) is None:
        return text
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_INLINE.sub(r"\\\1", text)
    return "\n".join(_escape_line_start(line) for line in text.split("\n"))


def escape_vtt(text: str) -> str:
    """Escape text for a WebVTT cue payload or a voice tag annotation.

    ``&``, ``<`` and ``>`` become character references (https://www.w3.org/TR/webvtt1/), which
    also makes ``-->`` impossible; line breaks (which would end the cue) are
    flattened.

    Args:
        text: untrusted text.

    Returns:
        Text that parses back to exactly the cleaned input.
    """
    text = clean_text(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SRT_MARKUP = str.maketrans({"<": "\u2039", ">": "\u203a", "{": "(", "}": ")"})


def escape_srt(text: str) -> str:
    r"""Neutralise text for an SRT cue.

    SRT has no escape mechanism, but players interpret ``<i>``/``<font>`` tags
    and ``{\an8}`` override codes, and a blank line or ``-->`` breaks the
    cue. Angle brackets become single guillemets and braces parentheses, and
    line breaks are flattened.

    Args:
        text: untrusted text.

    Returns:
        Text safe to place on an SRT cue line.
    """
    return clean_text(text).translate(_SRT_MARKUP)


def escape_markdown_block(text: str) -> str:
    """Escape multi-line untrusted text (a note) for Markdown, keeping its line breaks.

    Blank lines separate paragraphs; single line breaks become hard breaks
    (a trailing backslash, https://spec.commonmark.org/ "Hard line breaks") instead of
    being joined.
    """
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "\n\n".join(
        "\\\n".join(escape_markdown(line) for line in paragraph.split("\n") if line)
        for paragraph in paragraphs
    )
