"""Shaping the words heard in a file by the create request's options (checklist item 15).

``audio_start_from``/``audio_end_at`` keep the words of that slice (times stay on the
file's clock); ``custom_spelling`` replaces words whose text matches a ``from`` entry
case-insensitively; ``speaker_labels`` gives each sentence a speaker, cycling through
as many labels as ``speakers_expected`` (or ``speaker_options``) asks for, and builds
``utterances``. The tone code carries no voices, so the speakers are a deterministic
stand-in: what a test can check is their count and shape.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

__all__ = ["WordList", "shape_words", "speaker_count", "utterances"]

WordList = list[dict[str, Any]]

_PUNCTUATION = string.punctuation
_SENTENCE_ENDS = (".", "?", "!")
# With diarization and no hint, the service decides; two is what a meeting usually has.
_DEFAULT_SPEAKERS = 2


def _core(text: str) -> tuple[str, str, str]:
    """``"Friday,"`` → ``("", "Friday", ",")``: a word without its punctuation."""
    core = text.strip(_PUNCTUATION)
    if not core:
        return "", text, ""
    start = text.index(core)
    return text[:start], core, text[start + len(core) :]


def _respell(words: WordList, rules: list[dict[str, Any]]) -> WordList:
    spellings = {source.lower(): rule["to"] for rule in rules for source in rule["from"]}
    shaped = []
    for word in words:
        before, core, after = _core(word["text"])
        target = spellings.get(core.lower())
        shaped.append(word if target is None else {**word, "text": before + target + after})
    return shaped


def _trim(words: WordList, start_ms: int | None, end_ms: int | None) -> WordList:
    """The words whose middle lies in the slice."""
    low = start_ms if start_ms is not None else 0
    high = end_ms if end_ms is not None else float("inf")
    return [w for w in words if low <= (w["start"] + w["end"]) / 2 <= high]


def speaker_count(params: Mapping[str, Any]) -> int:
    """How many speakers the job hears: ``speakers_expected``, else within ``speaker_options``."""
    expected = params.get("speakers_expected")
    if isinstance(expected, int) and expected > 0:
        return expected
    options = params.get("speaker_options") or {}
    low = options.get("min_speakers_expected") or 1
    high = options.get("max_speakers_expected") or max(low, _DEFAULT_SPEAKERS)
    return max(low, min(high, _DEFAULT_SPEAKERS))


def _label(index: int) -> str:
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def _diarize(words: WordList, speakers: int) -> WordList:
    shaped, sentence = [], 0
    for word in words:
        shaped.append({**word, "speaker": _label(sentence % speakers)})
        if word["text"].endswith(_SENTENCE_ENDS):
            sentence += 1
    return shaped


def shape_words(words: WordList, params: Mapping[str, Any]) -> WordList:
    """The words as the request's options make them."""
    shaped = _trim(words, params.get("audio_start_from"), params.get("audio_end_at"))
    if params.get("custom_spelling"):
        shaped = _respell(shaped, params["custom_spelling"])
    if params.get("speaker_labels"):
        shaped = _diarize(shaped, speaker_count(params))
    return shaped


def utterances(words: WordList) -> WordList:
    """Runs of one speaker's words (spec 5.4)."""
    runs: list[WordList] = []
    for word in words:
        if runs and runs[-1][-1]["speaker"] == word["speaker"]:
            runs[-1].append(word)
        else:
            runs.append([word])
    return [
        {
            "confidence": sum(w["confidence"] for w in run) / len(run),
            "start": run[0]["start"],
            "end": run[-1]["end"],
            "text": " ".join(w["text"] for w in run),
            "words": run,
            "speaker": run[0]["speaker"],
        }
        for run in runs
    ]
