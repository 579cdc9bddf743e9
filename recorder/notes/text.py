"""Notes as plain text lines, for ``recorder notes`` and ``recorder show``."""

from __future__ import annotations

from collections.abc import Callable

from recorder.notes.transcript import clock
from storage.notes import MeetingNotes, NoteItem

__all__ = ["format_cost", "notes_lines"]


def _when(item: NoteItem) -> str:
    start, end = clock(item.start_ms), clock(item.end_ms)
    return f"[{start}]" if start == end else f"[{start}-{end}]"


def format_cost(notes: MeetingNotes) -> str:
    """``model, N calls, I in + O out tokens, ~$P``."""
    usage = notes.usage
    price = "price unknown" if usage.price_usd is None else f"~${usage.price_usd:.4f}"
    return (
        f"{notes.model}, {usage.calls} calls, {usage.input_tokens} in + "
        f"{usage.output_tokens} out tokens, {price}"
    )


def _same(text: str) -> str:
    return text


def notes_lines(notes: MeetingNotes, clean: Callable[[str], str] | None = None) -> list[str]:
    """The notes as text lines (summary, bullets, decisions, actions, questions, cost).

    Args:
        notes: the notes.
        clean: a ``str -> str`` cleaner applied to every model-written string (control
            characters out), or None.
    """
    fix = clean or _same
    content = notes.content
    lines = [f"Notes (revision {notes.revision}, {format_cost(notes)})"]
    if content.summary:
        lines += ["", "Summary:", "  " + fix(" ".join(content.summary))]
    if content.bullets:
        lines += ["", "Key points:"]
        lines += [f"  - {fix(b.text)} {_when(b)}" for b in content.bullets]
    lines += ["", "Decisions:"]
    lines += [f"  - {fix(d.text)} {_when(d)}" for d in content.decisions] or ["  (none)"]
    lines += ["", "Action items:"]
    for item in content.action_items:
        who = fix(item.owner) if item.owner else "unassigned"
        due = f", due {fix(item.due)}" if item.due else ""
        lines.append(f"  [ ] {fix(item.text)} ({who}{due}) {_when(item)}")
    if not content.action_items:
        lines.append("  (none)")
    lines += ["", "Open questions:"]
    lines += [f"  - {fix(q.text)} {_when(q)}" for q in content.open_questions] or ["  (none)"]
    return lines
