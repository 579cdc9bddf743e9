"""Scripted meetings for the notes tests and bench: what is said, and what the notes must hold.

Each scripted line may carry what it means for the notes (an action item with its owner
and due date, a decision, an open question); the tests check the notes against these
annotations, so nothing about the expected notes is written twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from storage.records import Meeting, Turn
from tests.support.export_data import make_meeting, make_turn

__all__ = [
    "NAMES",
    "ScriptedLine",
    "long_script",
    "meeting_from_script",
    "short_script",
]

NAMES = {1: "Alice Martin", 2: "Bob", 3: "Chloé", 4: "Dmitri"}
_UIDS = {name: uid for uid, name in NAMES.items()}


@dataclass(frozen=True, slots=True)
class ScriptedLine:
    """One turn and what it should become in the notes.

    Attributes:
        kind: ``action``, ``decision``, ``question`` (left open) or None.
        what: for an action item, the task as the notes should say it.
        due: for an action item, the due date as said.
    """

    speaker: str
    text: str
    kind: str | None = None
    what: str | None = None
    due: str | None = None


def short_script() -> list[ScriptedLine]:
    """A ten-minute planning meeting with every kind of item."""
    return [
        ScriptedLine("Alice Martin", "Good morning, let's review the launch plan and the budget."),
        ScriptedLine(
            "Bob",
            "I'll send the updated budget to finance by Friday.",
            "action",
            "Send the updated budget to finance",
            "Friday",
        ),
        ScriptedLine("Chloé", "The landing page copy is nearly finished."),
        ScriptedLine(
            "Alice Martin",
            "After some discussion we agreed to launch on the second of March.",
            "decision",
        ),
        ScriptedLine("Dmitri", "Who will negotiate the vendor contract renewal?", "question"),
        ScriptedLine("Chloé", "The design review went well yesterday."),
        ScriptedLine("Bob", "The staging servers were upgraded last night."),
        ScriptedLine("Alice Martin", "Is the analytics dashboard ready for the launch?"),
        ScriptedLine("Chloé", "Yes, the dashboard shipped this morning."),
        ScriptedLine(
            "Chloé",
            "I will write the release notes.",
            "action",
            "Write the release notes",
            None,
        ),
        ScriptedLine("Dmitri", "Let's go with the blue theme for the banner.", "decision"),
        ScriptedLine(
            "Dmitri",
            "I'm going to book the venue for the launch party tomorrow.",
            "action",
            "Book the venue for the launch party",
            "tomorrow",
        ),
        ScriptedLine("Alice Martin", "Thanks everyone, that covers the agenda."),
    ]


_FILLER = [
    "The numbers for the last sprint look steady across the board.",
    "Customer feedback on the onboarding flow has been mostly positive.",
    "The support queue was shorter than usual this week.",
    "Our test coverage went up a little after the refactoring.",
    "The mobile build passed every check on the first try.",
    "Marketing reported more newsletter signups than in the previous month.",
    "The database migration ran overnight without trouble.",
    "Hiring for the data team is moving along as planned.",
    "The conference talk proposal was accepted by the organisers.",
    "Latency on the search page dropped after the cache change.",
]
_TASKS = [
    ("prepare the quarterly report", "Monday"),
    ("update the security checklist", None),
    ("call the logistics partner", "next week"),
    ("fix the flaky export test", "Thursday"),
    ("draft the hiring plan", "end of the month"),
    ("review the accessibility audit", None),
]
_DECISIONS = [
    "We agreed to freeze features two weeks before each release.",
    "Let's go with the cheaper hosting plan for the staging cluster.",
    "We decided to hold the retrospective every second Friday.",
]
_QUESTIONS = [
    "What happens to the legacy importer after the migration?",
    "Which region should host the new analytics warehouse?",
    "How will partners be told about the pricing change?",
]


def long_script(hours: float, *, seed: int = 7) -> list[ScriptedLine]:
    """A meeting of ``hours`` (one turn every 6 s) with items spread through it."""
    rng = random.Random(seed)
    speakers = list(NAMES.values())
    lines: list[ScriptedLine] = []
    count = int(hours * 3600 / 6)
    for index in range(count):
        speaker = speakers[index % len(speakers)]
        if index % 97 == 50:
            task, due = _TASKS[(index // 97) % len(_TASKS)]
            text = f"I'll {task}" + (f" by {due}" if due else "") + "."
            if due in ("next week",):
                text = f"I'll {task} {due}."
            what = task[:1].upper() + task[1:]
            lines.append(ScriptedLine(speaker, text, "action", what, due))
        elif index % 211 == 100:
            lines.append(
                ScriptedLine(speaker, _DECISIONS[(index // 211) % len(_DECISIONS)], "decision")
            )
        elif index % 401 == 200:
            lines.append(
                ScriptedLine(speaker, _QUESTIONS[(index // 401) % len(_QUESTIONS)], "question")
            )
        else:
            lines.append(ScriptedLine(speaker, rng.choice(_FILLER)))
    return lines


def meeting_from_script(
    lines: list[ScriptedLine], *, step_ms: int = 6000, length_ms: int = 5000
) -> Meeting:
    """Records for a scripted meeting: turn ``i`` spans ``[i*step, i*step+length)``."""
    turns: list[Turn] = []
    for index, line in enumerate(lines):
        uid = _UIDS[line.speaker]
        start = index * step_ms
        turns.append(
            make_turn(index + 1, uid, start, start + length_ms, line.text, name=line.speaker)
        )
    duration = len(lines) * step_ms + 1000
    return make_meeting([(uid, name) for uid, name in NAMES.items()], turns, duration_ms=duration)
