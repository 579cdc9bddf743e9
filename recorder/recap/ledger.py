"""What a recap covers: the meeting's final turns, from the store and from what was just heard.

The transcript writer gathers turns for up to half a second before it commits
(recorder/writer.py), and waiting for that would eat most of the 2 s between a
spoken request and the recap (issue 8). :class:`TurnLedger` therefore reads
what is committed and adds the final turns the observer has heard that are
not committed yet, so a recap never misses the last words said.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from recorder.pipeline import FinalTurn
from storage.records import Turn
from storage.store import TranscriptStore

__all__ = ["HeardTurn", "TurnLedger", "turn_key"]


@dataclass(frozen=True, slots=True)
class HeardTurn:
    """A final turn heard but not yet committed; fits ``recorder.recap.reply.RecapTurn``."""

    uid: int
    speaker: str
    start_ms: int
    end_ms: int
    text: str
    id: int = -1


RecapSource = Turn | HeardTurn


def turn_key(turn: RecapSource | FinalTurn) -> tuple[int, int]:
    """One turn's identity on the timeline: the stored row and the heard final share it.

    A formatted final replaces the unformatted one with the same timing, and the
    store keeps the turn's start as the pipeline placed it (bot.py ``_on_final``).
    """
    return (turn.uid, turn.start_ms)


class TurnLedger:
    """The turns a recap may cover, and which ones earlier recaps covered.

    Args:
        names: display names by uid, for turns not yet in the store.
    """

    def __init__(self, names: Mapping[int, str] | None = None) -> None:
        self._names = dict(names or {})
        self._heard: dict[tuple[int, int], FinalTurn] = {}
        self._finals: set[tuple[int, tuple[int, int], int]] = set()
        self._recapped: set[tuple[int, int]] = set()
        self.heard_count = 0

    def add(self, turn: FinalTurn) -> bool:
        """Note a final turn; returns False for a repeat (the formatted final of a turn)."""
        self._heard[turn_key(turn)] = turn
        final = (turn.uid, turn.socket_key, turn.turn_order)
        if final in self._finals:
            return False
        self._finals.add(final)
        self.heard_count += 1
        return True

    async def read(self, store: TranscriptStore, meeting_id: int) -> list[RecapSource]:
        """Every turn so far, in meeting-time order: the store's plus those not committed yet.

        Raises:
            StorageError: the store could not be read.
        """
        stored = [turn async for turn in store.iter_turns(meeting_id)]
        names = dict(self._names)
        for turn in stored:
            if turn.display_name:
                names[turn.uid] = turn.display_name
            # Committed now: the store is the truth from here on (and memory stays small).
            self._heard.pop(turn_key(turn), None)
        keys = {turn_key(turn) for turn in stored}
        pending = [
            HeardTurn(t.uid, names.get(t.uid) or str(t.uid), t.start_ms, t.end_ms, t.text)
            for key, t in self._heard.items()
            if key not in keys
        ]
        merged: list[RecapSource] = [*stored, *pending]
        merged.sort(key=lambda t: (t.start_ms, t.uid))
        return merged

    def select(
        self,
        turns: Sequence[RecapSource],
        *,
        since_last: bool,
        leave_out: tuple[int, int] | None = None,
        is_request: Callable[[str], bool] | None = None,
    ) -> list[RecapSource]:
        """The turns to recap: all, or those no earlier recap covered; never the requests.

        Args:
            turns: every turn so far (:meth:`read`).
            since_last: leave out turns an earlier recap covered.
            leave_out: the key of the turn that asked for the recap.
            is_request: whether a turn's text only asks for a recap (left out too).
        """
        return [
            turn
            for turn in turns
            if turn_key(turn) != leave_out
            and not (since_last and turn_key(turn) in self._recapped)
            and not (is_request is not None and is_request(turn.text))
        ]

    def mark_recapped(self, turns: Sequence[RecapSource]) -> None:
        """Remember that a recap covered these turns (for ``since_last``)."""
        self._recapped.update(turn_key(turn) for turn in turns)
