"""Make a meeting's notes, and answer questions, through the LLM Gateway.

A transcript longer than one request's budget is split between turns; each part's
notes are asked for separately (items keep the turn ids, hence the times, they come
from), then merged: items in time order without repeats, bullets taken evenly from the
parts, and the parts' summaries merged into one by one more request. Every answer is
validated; an invalid or truncated one is asked for once more, then reported as
:class:`~recorder.errors.LlmAnswerError`. Nothing is returned half made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from recorder.errors import LlmAnswerError
from recorder.llm.client import Completion, LlmClient
from recorder.llm.pricing import estimate_price_usd
from recorder.notes.schema import (
    ANSWER_SCHEMA,
    MERGE_SCHEMA,
    NOTES_SCHEMA,
    InvalidAnswer,
    PartNotes,
    answer_messages,
    merge_messages,
    notes_messages,
    parse_answer,
    parse_merge,
    parse_part_notes,
)
from recorder.notes.transcript import (
    DEFAULT_PART_TOKENS,
    TranscriptLine,
    estimate_tokens,
    lines_for,
    split_parts,
)
from storage.notes import NoteItem, NotesContent, NotesUsage
from storage.records import Turn

__all__ = ["Answer", "NotesRequest", "ask", "generate_notes"]

log = logging.getLogger("recorder.notes")

T = TypeVar("T")

# Answer budgets: a part's notes are a few hundred tokens; leave room for busy parts.
_NOTES_MAX_TOKENS = 8000
_MERGE_MAX_TOKENS = 1000
_ANSWER_MAX_TOKENS = 1000
# Bullets kept after merging parts.
_MAX_BULLETS = 8
# Transcript tokens sent with a question; longer meetings send the turns most like it.
_ASK_TOKENS = 100_000


@dataclass(frozen=True, slots=True)
class NotesRequest:
    """How to make the notes.

    Attributes:
        model: the gateway model id.
        language: the notes' language (None: the meeting's).
        prompt: extra instructions from the user.
        part_tokens: transcript tokens per request; longer meetings are split.
    """

    model: str
    language: str | None = None
    prompt: str | None = None
    part_tokens: int = DEFAULT_PART_TOKENS


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer from the transcript, with the turns it relies on."""

    found: bool
    text: str
    sources: tuple[TranscriptLine, ...]
    usage: NotesUsage


def _temperature(model: str) -> float | None:
    """0 for repeatable notes, except where only the default is accepted.

    OpenAI's reasoning models (``gpt-5*``, ``o*``) refuse any temperature but their
    default, so none is sent to them.
    """
    return None if model.startswith(("gpt-5", "o1", "o3", "o4")) else 0.0


async def _validated(
    client: LlmClient,
    messages: list[dict[str, str]],
    *,
    model: str,
    schema: dict[str, Any],
    schema_name: str,
    max_tokens: int,
    parse: Callable[[str | None], T],
    what: str,
) -> T:
    """One answer, asked again once if invalid or truncated."""
    reason = ""
    for attempt in (1, 2):
        completion: Completion = await client.complete(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=_temperature(model),
            json_schema=schema,
            schema_name=schema_name,
        )
        try:
            if completion.is_truncated:
                raise InvalidAnswer(f"the answer was cut off at {max_tokens} tokens")
            return parse(completion.content)
        except InvalidAnswer as exc:
            reason = str(exc)
            log.info("! %s: invalid answer (attempt %d): %s", what, attempt, reason)
            messages = [
                *messages,
                {
                    "role": "user",
                    "content": f"Your previous answer was unusable ({reason}). "
                    "Answer again with complete JSON matching the schema.",
                },
            ]
    raise LlmAnswerError(
        f"the model {model} gave no usable {what} in two tries ({reason}); "
        "try again, or another --model"
    )


def _usage(client: LlmClient, model: str, before_calls: int, before: Any) -> NotesUsage:
    used = client.usage
    input_tokens = used.input_tokens - before.input_tokens
    output_tokens = used.output_tokens - before.output_tokens
    return NotesUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        calls=client.calls - before_calls,
        price_usd=estimate_price_usd(model, input_tokens, output_tokens),
    )


def _merge_items(groups: Sequence[Sequence[NoteItem]]) -> tuple[NoteItem, ...]:
    """The parts' items in time order; an item repeated for the same turns counts once."""
    seen: set[tuple[str, str | None, tuple[int, ...]]] = set()
    merged = []
    for item in sorted((i for g in groups for i in g), key=lambda i: (i.start_ms, i.end_ms)):
        key = (item.text.casefold(), item.owner, item.turn_ids)
        if key not in seen:
            seen.add(key)
            merged.append(item)
    return tuple(merged)


def _spread(groups: Sequence[Sequence[NoteItem]], limit: int) -> tuple[NoteItem, ...]:
    """Up to ``limit`` items taken round-robin from the groups, in time order."""
    picked: list[NoteItem] = []
    depth = 0
    while len(picked) < limit and any(depth < len(g) for g in groups):
        for group in groups:
            if depth < len(group) and len(picked) < limit:
                picked.append(group[depth])
        depth += 1
    return tuple(sorted(picked, key=lambda i: i.start_ms))


async def generate_notes(
    client: LlmClient,
    turns: Sequence[Turn],
    request: NotesRequest,
    *,
    participants: Sequence[str] = (),
) -> tuple[NotesContent, NotesUsage]:
    """The meeting's notes and what they cost.

    Args:
        client: an open gateway client.
        turns: the meeting's turns (any order).
        request: model, language, extra instructions, part size.
        participants: everyone in the meeting, by the name shown (those who never spoke
            can own an action item too); the speakers are always included.

    Raises:
        LlmAnswerError: an answer stayed invalid after one retry.
        LlmError: the gateway failed (see :class:`~recorder.llm.client.LlmClient`).
    """
    before_calls, before = client.calls, client.usage
    lines = lines_for(turns)
    if not lines:
        return NotesContent(), _usage(client, request.model, before_calls, before)
    names = sorted({line.speaker for line in lines} | set(participants))
    parts = split_parts(lines, request.part_tokens)
    results: list[PartNotes] = []
    for number, part in enumerate(parts, start=1):
        messages = notes_messages(
            part,
            names,
            part=number,
            parts=len(parts),
            language=request.language,
            prompt=request.prompt,
        )
        results.append(
            await _validated(
                client,
                messages,
                model=request.model,
                schema=NOTES_SCHEMA,
                schema_name="meeting_notes",
                max_tokens=_NOTES_MAX_TOKENS,
                parse=partial(parse_part_notes, lines=part, participants=names),
                what="notes" if len(parts) == 1 else f"notes for part {number} of {len(parts)}",
            )
        )
    if len(results) == 1:
        summary = results[0].summary
    else:
        summary = await _validated(
            client,
            merge_messages(
                [r.summary for r in results], language=request.language, prompt=request.prompt
            ),
            model=request.model,
            schema=MERGE_SCHEMA,
            schema_name="notes_merge",
            max_tokens=_MERGE_MAX_TOKENS,
            parse=parse_merge,
            what="merged summary",
        )
    content = NotesContent(
        summary=summary,
        bullets=_spread([r.bullets for r in results], _MAX_BULLETS),
        decisions=_merge_items([r.decisions for r in results]),
        action_items=_merge_items([r.action_items for r in results]),
        open_questions=_merge_items([r.open_questions for r in results]),
    )
    return content, _usage(client, request.model, before_calls, before)


def _relevant(lines: Sequence[TranscriptLine], question: str, budget: int) -> list[TranscriptLine]:
    """All lines if they fit, else the ones sharing most words with the question."""
    if sum(estimate_tokens(line.render()) + 1 for line in lines) <= budget:
        return list(lines)
    wanted = {w for w in question.casefold().split() if len(w) > 3}
    ranked = sorted(
        lines,
        key=lambda line: -len(wanted & set(line.text.casefold().split())),
    )
    chosen, used = [], 0
    for line in ranked:
        cost = estimate_tokens(line.render()) + 1
        if used + cost > budget:
            break
        chosen.append(line)
        used += cost
    return sorted(chosen, key=lambda line: (line.start_ms, line.turn_id))


async def ask(
    client: LlmClient,
    turns: Sequence[Turn],
    question: str,
    *,
    model: str,
    language: str | None = None,
) -> Answer:
    """Answer a question from the transcript, citing the turns it relies on.

    Raises:
        LlmAnswerError: the answer stayed invalid after one retry.
        LlmError: the gateway failed.
    """
    before_calls, before = client.calls, client.usage
    lines = _relevant(lines_for(turns), question, _ASK_TOKENS)
    if not lines:
        return Answer(False, "", (), _usage(client, model, before_calls, before))
    found, text, sources = await _validated(
        client,
        answer_messages(lines, question, language=language),
        model=model,
        schema=ANSWER_SCHEMA,
        schema_name="transcript_answer",
        max_tokens=_ANSWER_MAX_TOKENS,
        parse=partial(parse_answer, lines=lines),
        what="answer",
    )
    return Answer(found, text, sources, _usage(client, model, before_calls, before))
