"""The emulated gateway's "model": deterministic, extractive, good enough to test wiring.

It reads the transcript lines recorder sends (``[T<turn id> <start>-<end>] <speaker>:
<text>``, see :mod:`recorder.notes.transcript`) and answers by rule:

* a sentence with a first-person commitment ("I'll ...", "I will ...", "I'm going to
  ...") becomes an action item owned by its speaker, with the due date said in it;
* a sentence with an agreement phrase ("we agreed", "let's go with", ...) a decision;
* a question no other speaker answers within the next few turns an open question;
* the summary is the most central sentences (sharing the most frequent words).

Which task is asked is told by the response format's schema name
(``meeting_notes``, ``notes_merge``, ``transcript_answer``); any other schema gets a
minimal instance generated from the schema, and no schema a short text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Line",
    "answer",
    "complete",
    "instance_for_schema",
    "merge_summaries",
    "notes_for",
    "parse_transcript",
]

_LINE = re.compile(
    r"^\[T(?P<id>\d+) (?P<start>\d+:\d\d:\d\d)-(?P<end>\d+:\d\d:\d\d)\] "
    r"(?P<who>[^:\n]+): (?P<text>.*)$",
    re.M,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_COMMITMENT = re.compile(
    r"\b(?:I'll|I will|I'm going to|I am going to|I promise to|I can take care of)\s+(?P<what>.+)",
    re.I,
)
_DUE = re.compile(
    r"\s*\b(?:by|before|on|until|due)\s+(?P<due>(?:next\s+|this\s+)?(?:monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|tomorrow|tonight|week|month)|end of (?:the )?"
    r"(?:day|week|month|quarter)|(?:january|february|march|april|may|june|july|august|"
    r"september|october|november|december) \d{1,2}(?:st|nd|rd|th)?|\d{4}-\d\d-\d\d)\b"
    r"|\s*\b(?P<bare>tomorrow|tonight|next week|this week|today)\b",
    re.I,
)
_DECISION = re.compile(
    r"\b(?:we agreed|we've agreed|we have agreed|it's agreed|agreed,|we decided|we've decided|"
    r"we have decided|decision is|let's go with|we'll go with|we will go with|we're going with|"
    r"we are going with|let's settle on|we settled on)\b",
    re.I,
)
_ANSWER_START = re.compile(
    r"^(?:yes|yeah|yep|no|nope|sure|correct|definitely|absolutely|it's|it is)\b", re.I
)
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    """a an and are as at be but by can could did do does for from had has have how i i'll i'm
    if in into is it it's its just let's me my no not of on or our so that the their them then
    there they this to up us was we we'll we're were what when where which who will with would
    you your yes yeah okay ok also about should shall going get got think know like right well
    very really some any all one two""".split()
)
# How many following turns may answer a question before it counts as open.
ANSWER_WINDOW = 3


@dataclass(frozen=True, slots=True)
class Line:
    """One transcript line as the model reads it."""

    turn_id: int
    start: str
    end: str
    speaker: str
    text: str


def parse_transcript(text: str) -> list[Line]:
    """Every transcript line in a prompt, in order."""
    return [
        Line(int(m["id"]), m["start"], m["end"], m["who"].strip(), m["text"].strip())
        for m in _LINE.finditer(text)
    ]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _content_words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word in _STOP:
            continue
        words.add(word[:-1] if word.endswith("s") and len(word) > 4 else word)
    return words


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _action(sentence: str) -> tuple[str, str | None] | None:
    match = _COMMITMENT.search(sentence)
    if match is None:
        return None
    what = match["what"].strip()
    if what.lower().startswith(("not ", "never ")):
        return None
    due: str | None = None
    found = _DUE.search(what)
    if found is not None:
        due = found["due"] or found["bare"]
        what = (what[: found.start()] + what[found.end() :]).strip()
    what = what.rstrip(" .!?,;")
    return (_capitalise(what), due) if what else None


def _is_answered(index: int, lines: Sequence[Line], question: str) -> bool:
    asker = lines[index].speaker
    wanted = _content_words(question)
    for later in lines[index + 1 : index + 1 + ANSWER_WINDOW]:
        if later.speaker == asker:
            continue
        if _ANSWER_START.match(later.text):
            return True
        if len(wanted & _content_words(later.text)) >= 2:
            return True
    return False


def _central(
    candidates: Sequence[tuple[str, int]], count: int, frequency: Counter[str]
) -> list[tuple[str, int]]:
    """The ``count`` sentences sharing the most frequent words, in their original order."""
    scored = []
    for position, (sentence, turn_id) in enumerate(candidates):
        words = _content_words(sentence)
        if len(words) < 3:
            continue
        score = sum(frequency[w] for w in words) / math.sqrt(len(words))
        scored.append((score, position, sentence, turn_id))
    best = sorted(scored, key=lambda item: (-item[0], item[1]))[:count]
    return [(sentence, turn_id) for _, _, sentence, turn_id in sorted(best, key=lambda i: i[1])]


def notes_for(lines: Sequence[Line]) -> dict[str, Any]:
    """Notes for transcript lines, in the ``meeting_notes`` schema's shape."""
    decisions: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    candidates: list[tuple[str, int]] = []
    frequency: Counter[str] = Counter()
    for index, line in enumerate(lines):
        for sentence in _sentences(line.text):
            frequency.update(_content_words(sentence))
            candidates.append((sentence, line.turn_id))
            action = _action(sentence)
            if action is not None:
                what, due = action
                actions.append(
                    {"text": what, "owner": line.speaker, "due": due, "turn_ids": [line.turn_id]}
                )
            if _DECISION.search(sentence):
                decisions.append({"text": sentence, "turn_ids": [line.turn_id]})
            if sentence.endswith("?") and not _is_answered(index, lines, sentence):
                questions.append({"text": sentence, "turn_ids": [line.turn_id]})
    speaker_of = {line.turn_id: line.speaker for line in lines}
    summary = [s for s, _ in _central(candidates, 3, frequency)]
    bullets = [
        {"text": f"{speaker_of[turn_id]}: {sentence}", "turn_ids": [turn_id]}
        for sentence, turn_id in _central(candidates, 5, frequency)
    ]
    return {
        "summary": summary,
        "bullets": bullets,
        "decisions": decisions,
        "action_items": actions,
        "open_questions": questions,
    }


def merge_summaries(prompt: str) -> dict[str, Any]:
    """The ``notes_merge`` answer: the most central of the parts' summary sentences."""
    sentences = [line[2:].strip() for line in prompt.splitlines() if line.startswith("- ")]
    frequency: Counter[str] = Counter()
    for sentence in sentences:
        frequency.update(_content_words(sentence))
    central = _central([(s, 0) for s in sentences], 4, frequency)
    return {"summary": [s for s, _ in central] or sentences[:4]}


def answer(question: str, lines: Sequence[Line]) -> dict[str, Any]:
    """The ``transcript_answer`` answer: the turns sharing most words with the question."""
    wanted = _content_words(question)
    scored = sorted(
        ((len(wanted & _content_words(line.text)), -i, line) for i, line in enumerate(lines)),
        key=lambda item: (item[0], item[1]),
        reverse=True,
    )
    needed = 1 if len(wanted) <= 2 else 2
    best = [line for overlap, _, line in scored[:2] if overlap >= needed]
    if not best:
        return {
            "found": False,
            "answer": "The transcript does not say.",
            "turn_ids": [],
        }
    best.sort(key=lambda line: line.turn_id)
    text = " ".join(f"{line.speaker} said at {line.start}: {line.text}" for line in best)
    return {"found": True, "answer": text, "turn_ids": [line.turn_id for line in best]}


def instance_for_schema(schema: Any) -> Any:
    """A minimal value that validates against a JSON schema (objects, arrays, scalars)."""
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: instance_for_schema(properties.get(name, {}))
            for name in schema.get("required", [])
        }
    if kind == "array":
        return [instance_for_schema(schema["items"])] * int(schema.get("minItems", 0))
    return {"string": "emulated", "integer": 0, "number": 0, "boolean": False}.get(str(kind), None)


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Everything the user said, in order (a retry's reminder follows the transcript)."""
    texts = []
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                texts.append("".join(p.get("text", "") for p in content if isinstance(p, Mapping)))
            else:
                texts.append(str(content or ""))
    return "\n".join(texts)


def complete(messages: Sequence[Mapping[str, Any]], schema_name: str | None, schema: Any) -> Any:
    """The answer for a request: a JSON-ready value with a schema, else a string."""
    text = _user_text(messages)
    if schema_name == "meeting_notes":
        return notes_for(parse_transcript(text))
    if schema_name == "notes_merge":
        return merge_summaries(text)
    if schema_name == "transcript_answer":
        question = re.search(r"^Question: (.+)$", text, re.M)
        return answer(question[1] if question else "", parse_transcript(text))
    if schema is not None:
        return instance_for_schema(schema)
    return "Emulated answer to: " + " ".join(text.split())[:80]
