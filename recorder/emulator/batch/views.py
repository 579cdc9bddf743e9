"""Read views of a completed transcript: subtitles, sentences, paragraphs, word search.

Shapes per the spec (sections 7.4-7.6; checklist item 18). Sentences end at a word
ending ``.``, ``?`` or ``!``; a paragraph is a run of sentences by one speaker without a
pause of :data:`PARAGRAPH_GAP_MS` (the service's segmentation is not documented).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from recorder.emulator.batch.results import WordList

__all__ = [
    "DEFAULT_WORDS_PER_CAPTION",
    "MAX_SEARCH_PHRASE_WORDS",
    "PARAGRAPH_GAP_MS",
    "paragraphs",
    "search_terms",
    "sentences",
    "subtitles",
    "word_search",
]

#: A caption's words without ``chars_per_caption`` (the service's default is not documented).
DEFAULT_WORDS_PER_CAPTION = 8
#: A pause this long between sentences starts a new paragraph.
PARAGRAPH_GAP_MS = 2000
#: "phrases up to five words" (spec 7.6).
MAX_SEARCH_PHRASE_WORDS = 5
_SENTENCE_ENDS = (".", "?", "!")


def _stamp(ms: int, kind: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if kind == "srt":
        return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"
    # The spec's VTT example writes mm:ss.mmm; hours only when there are some.
    head = f"{hours:02d}:" if hours else ""
    return f"{head}{minutes:02d}:{seconds:02d}.{millis:03d}"


def _captions(words: WordList, chars_per_caption: int | None) -> list[WordList]:
    if chars_per_caption is None:
        size = DEFAULT_WORDS_PER_CAPTION
        return [words[i : i + size] for i in range(0, len(words), size)]
    cues: list[WordList] = []
    length = 0
    for word in words:
        grown = length + 1 + len(word["text"])
        if cues and grown <= chars_per_caption:
            cues[-1].append(word)
            length = grown
        else:  # a word longer than a caption still gets one of its own
            cues.append([word])
            length = len(word["text"])
    return cues


def subtitles(words: WordList, kind: str, chars_per_caption: int | None) -> str:
    """SRT or VTT text of ``words``."""
    lines = ["WEBVTT", ""] if kind == "vtt" else []
    for number, cue in enumerate(_captions(words, chars_per_caption), 1):
        if kind == "srt":
            lines.append(str(number))
        lines.append(f"{_stamp(cue[0]['start'], kind)} --> {_stamp(cue[-1]['end'], kind)}")
        lines.append(" ".join(w["text"] for w in cue))
        lines.append("")
    return "\n".join(lines)


def _segment(words: WordList) -> dict[str, Any]:
    return {
        "text": " ".join(w["text"] for w in words),
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "confidence": sum(w["confidence"] for w in words) / len(words),
        "words": words,
    }


def _sentence_runs(words: WordList) -> list[WordList]:
    runs: list[WordList] = [[]]
    for word in words:
        runs[-1].append(word)
        if word["text"].endswith(_SENTENCE_ENDS):
            runs.append([])
    return [run for run in runs if run]


def sentences(words: WordList) -> list[dict[str, Any]]:
    """``sentences[]`` items: text, start, end, confidence, words, speaker (and channel)."""
    found = []
    for run in _sentence_runs(words):
        item = _segment(run)
        item["speaker"] = run[0].get("speaker")
        if run[0].get("channel") is not None:
            item["channel"] = run[0]["channel"]
        found.append(item)
    return found


def paragraphs(words: WordList) -> list[dict[str, Any]]:
    """``paragraphs[]`` items: text, start, end, confidence, words."""
    groups: list[WordList] = []
    for run in _sentence_runs(words):
        if groups:
            previous = groups[-1][-1]
            same_speaker = previous.get("speaker") == run[0].get("speaker")
            if same_speaker and run[0]["start"] - previous["end"] < PARAGRAPH_GAP_MS:
                groups[-1].extend(run)
                continue
        groups.append(list(run))
    return [_segment(group) for group in groups]


def _bare(text: str) -> str:
    return text.strip(string.punctuation).lower()


def word_search(words: WordList, terms: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """``(total_count, matches)``: each term's occurrences, as ``[start, end]`` and word index."""
    bare = [_bare(w["text"]) for w in words]
    matches: list[dict[str, Any]] = []
    total = 0
    for term in terms:
        wanted = [_bare(part) for part in term.split()]
        size = len(wanted)
        found = [i for i in range(len(bare) - size + 1) if bare[i : i + size] == wanted]
        total += len(found)
        if found:
            matches.append(
                {
                    "text": term,
                    "count": len(found),
                    "timestamps": [[words[i]["start"], words[i + size - 1]["end"]] for i in found],
                    "indexes": found,
                }
            )
    return total, matches


def search_terms(query: Mapping[str, str]) -> list[str] | str:
    """The ``words`` query parameter's terms, or the 400 error text."""
    terms = [term.strip() for term in query.get("words", "").split(",") if term.strip()]
    if not terms:
        return "words is required: a comma-separated list of words or phrases"
    for term in terms:
        if len(term.split()) > MAX_SEARCH_PHRASE_WORDS:
            return f"word search phrases may have at most {MAX_SEARCH_PHRASE_WORDS} words: {term!r}"
    return terms
