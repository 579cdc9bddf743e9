"""The JSON export: a documented, versioned, lossless copy of one meeting.

Unlike the human formats, JSON keeps every string exactly as stored (JSON's
own escaping makes control characters harmless), so it can be read back into
the same records (the tests do). The schema is :data:`SCHEMA`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from typing import Any

from storage.notes import MeetingNotes, content_to_json
from storage.records import (
    Meeting,
    Turn,
)

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "meeting_notes_to_json",
    "meeting_to_json",
    "turn_to_json",
    "write_json",
]

SCHEMA_VERSION = 1

SCHEMA = """\
JSON export, schema_version 1.

Times of day are ISO 8601 strings in UTC ending in ``Z``; positions in the
meeting are integer milliseconds since the meeting started (``*_ms``).
Fields marked "or null" are always present. New fields may be added within
a schema version; a field is never removed or changed in meaning without
bumping ``schema_version``.

Top level (keys in this order):
    schema_version   integer, 1
    meeting          object, below
    participants     array of participant objects, by first_seen
    stream_sessions  array of stream session objects, by opened_at
    notes            array of note objects, by created_at
    gaps             array of gap objects, by from_ms
    meeting_notes    meeting_notes object, the current written notes, or null
    turns            array of turn objects, in time order (start_ms), one per line

meeting:
    id                 integer
    channel            string, the Agora channel
    bot_uid            integer, the uid the recorder joined with
    status             string, one of "recording", "completed" (everything said was
                       transcribed, live or repaired), "partial" (some speech is
                       not transcribed: see gaps), "failed" (nothing could be
                       recorded), "interrupted" (the recorder stopped before the
                       meeting's end: killed, channel lost, or a fatal error)
    started_at         string (time of day)
    ended_at           string (time of day) or null while recording
    duration_ms        integer or null while recording
    participant_count  integer
    turn_count         integer
    billed_ms          integer, streaming socket-open time (what is billed), all sockets,
                       on the meeting's clock (a replay at --speed N: wall time x N)
    speech_ms          integer, the turns' spans (first word to last), all participants
    billed_speech_ratio  number or null without speech, billed_ms / speech_ms
    price_per_hour     number, USD per hour of socket-open time the estimate uses
    estimated_cost_usd number, billed_ms at price_per_hour
    revision           integer, the transcript revision exported (1: as recorded;
                       higher: 'recorder retranscribe')

participant:
    uid           integer, the Agora uid
    display_name  string or null when no name is known
    speaker       string, display_name or else the uid as text (what exports show)
    first_seen    string (time of day)
    last_seen     string (time of day)
    talk_ms       integer, total length of the participant's turns
    turn_count    integer

stream_session (one speech-to-text socket; its open time is what is billed):
    id                   integer
    uid                  integer
    provider_session_id  string or null
    opened_at            string (time of day)
    closed_at            string (time of day) or null if still open; closed_at -
                         opened_at is the open time on the meeting's clock (wall
                         time, or wall time x N for a replay at --speed N)
    audio_seconds        number, audio sent on the socket
    close_code           integer or null
    close_reason         string or null

note:
    id          integer
    kind        string, e.g. "recap"
    text        string, may contain line breaks
    created_at  string (time of day)
    spoken      boolean, whether it was spoken into the channel
    meta        object, free-form details from the writer

gap (a stretch of one participant's audio live transcription missed):
    uid        integer
    from_ms    integer
    to_ms      integer
    cause      string, why it was missed (service unreachable, outage, ...)
    state      string: "open" (not transcribed yet; 'recorder repair' can retry),
               "repaired" (its words are in turns with source "repaired"),
               "lost" (no audio was kept to repair it from)

meeting_notes (written by the LLM Gateway; the highest revision is current):
    revision       integer, 1 for the first notes, +1 each time they are remade
    created_at     string (time of day)
    model          string, the gateway model that wrote them
    language       string or null, the language asked for
    prompt         string or null, extra instructions given
    usage          object: input_tokens, output_tokens, calls (integers) and
                   price_usd (number, an estimate at published rates, or null)
    summary        array of strings, a few sentences
    bullets        array of note item objects, key points
    decisions      array of note item objects
    action_items   array of note item objects (with owner and due)
    open_questions array of note item objects

note item (each points at the turns it comes from):
    text      string
    start_ms  integer, start of its first turn
    end_ms    integer, end of its last turn
    turn_ids  array of integers, ids of the turns (see turn.id), at least one
    owner     string or null, the participant who will do it (action items)
    due       string or null, when it is due, as said (action items)

turn:
    id                      integer
    uid                     integer
    speaker                 string, display_name or else the uid as text
    display_name            string or null
    stream_session_id       integer
    turn_order              integer, order within its stream session
    start_ms                integer
    end_ms                  integer
    text                    string, may be empty
    language                string or null
    end_of_turn_confidence  number or null
    source                  string: "live", "repaired" (from the kept audio) or
                            "retranscribed"
    revision                integer
    words                   array of word objects (may be empty)

word:
    text        string, with attached punctuation
    start_ms    integer
    end_ms      integer
    confidence  number or null
"""


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def meeting_to_json(meeting: Meeting, *, price_per_hour: float | None = None) -> dict[str, Any]:
    """Everything but the turns, as the JSON-ready header object.

    ``price_per_hour`` prices the streaming (default: the default model's list price).
    """
    from recorder.config import DEFAULT_SPEECH_MODEL
    from recorder.stt.price import estimate_cost, list_price_per_hour

    summary = meeting.summary
    duration_s = summary.duration_s
    billed_ms = round(sum(s.billed_seconds for s in meeting.stream_sessions) * 1000)
    speech_ms = sum(p.talk_ms for p in meeting.participants)
    if price_per_hour is None:
        price_per_hour = list_price_per_hour(DEFAULT_SPEECH_MODEL)
    return {
        "schema_version": SCHEMA_VERSION,
        "meeting": {
            "id": summary.id,
            "channel": summary.channel,
            "bot_uid": summary.bot_uid,
            "status": summary.status,
            "started_at": _time(summary.started_at),
            "ended_at": _time(summary.ended_at),
            "duration_ms": None if duration_s is None else round(duration_s * 1000),
            "participant_count": summary.participant_count,
            "turn_count": summary.turn_count,
            "billed_ms": billed_ms,
            "speech_ms": speech_ms,
            "billed_speech_ratio": round(billed_ms / speech_ms, 3) if speech_ms else None,
            "price_per_hour": price_per_hour,
            "estimated_cost_usd": round(estimate_cost(billed_ms, price_per_hour), 6),
            "revision": meeting.revision,
        },
        "participants": [
            {
                "uid": p.uid,
                "display_name": p.display_name,
                "speaker": p.speaker,
                "first_seen": _time(p.first_seen),
                "last_seen": _time(p.last_seen),
                "talk_ms": p.talk_ms,
                "turn_count": p.turn_count,
            }
            for p in meeting.participants
        ],
        "stream_sessions": [
            {
                "id": s.id,
                "uid": s.uid,
                "provider_session_id": s.provider_session_id,
                "opened_at": _time(s.opened_at),
                "closed_at": _time(s.closed_at),
                "audio_seconds": s.audio_seconds,
                "close_code": s.close_code,
                "close_reason": s.close_reason,
            }
            for s in meeting.stream_sessions
        ],
        "notes": [
            {
                "id": n.id,
                "kind": n.kind,
                "text": n.text,
                "created_at": _time(n.created_at),
                "spoken": n.spoken,
                "meta": n.meta,
            }
            for n in meeting.notes
        ],
        "gaps": [
            {
                "uid": g.uid,
                "from_ms": g.from_ms,
                "to_ms": g.to_ms,
                "cause": g.cause,
                "state": g.state,
            }
            for g in meeting.gaps
        ],
        "meeting_notes": (
            None if meeting.meeting_notes is None else meeting_notes_to_json(meeting.meeting_notes)
        ),
    }


def meeting_notes_to_json(notes: MeetingNotes) -> dict[str, Any]:
    """The written notes as their JSON object (``meeting_notes`` in the schema)."""
    content = notes.content
    return {
        "revision": notes.revision,
        "created_at": _time(notes.created_at),
        "model": notes.model,
        "language": notes.language,
        "prompt": notes.prompt,
        "usage": {
            "input_tokens": notes.usage.input_tokens,
            "output_tokens": notes.usage.output_tokens,
            "calls": notes.usage.calls,
            "price_usd": notes.usage.price_usd,
        },
        **content_to_json(content),
    }


def turn_to_json(turn: Turn) -> dict[str, Any]:
    """One turn as its JSON object."""
    return {
        "id": turn.id,
        "uid": turn.uid,
        "speaker": turn.speaker,
        "display_name": turn.display_name,
        "stream_session_id": turn.stream_session_id,
        "turn_order": turn.turn_order,
        "start_ms": turn.start_ms,
        "end_ms": turn.end_ms,
        "text": turn.text,
        "language": turn.language,
        "end_of_turn_confidence": turn.end_of_turn_confidence,
        "source": turn.source,
        "revision": turn.revision,
        "words": [
            {"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms, "confidence": w.confidence}
            for w in turn.words
        ],
    }


def _dumps(value: Any, **options: Any) -> str:
    # U+2028/2029 are valid JSON but end a line in JavaScript before ES2019 and
    # in some line-oriented tools; escape them like the other line breaks.
    text = json.dumps(value, ensure_ascii=False, **options)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


async def write_json(
    meeting: Meeting, turns: AsyncIterable[Turn], *, price_per_hour: float | None = None
) -> AsyncIterator[str]:
    """Stream the export: the header pretty-printed, then one turn per line.

    Args:
        meeting: header records (its ``turns`` are ignored).
        turns: the meeting's turns in time order.
        price_per_hour: prices the streaming (default: the list price).

    Yields:
        Pieces of one JSON document.
    """
    header = _dumps(meeting_to_json(meeting, price_per_hour=price_per_hour), indent=2)
    yield header[: header.rindex("}")].rstrip() + ',\n  "turns": ['
    first = True
    async for turn in turns:
        yield ("\n    " if first else ",\n    ") + _dumps(turn_to_json(turn))
        first = False
    yield "\n  ]\n}\n" if not first else "]\n}\n"
