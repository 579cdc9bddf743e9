"""Which turns a recap covers: the final turns in the store and those just heard.

The transcript writer gathers turns for up to half a second before it commits
(recorder/writer.py), and waiting for that would eat most of the 2 s a recap
has between a spoken request and its first word. :class:`TurnLedger`
therefore reads what is committed and adds the final turns the observer has
heard that are not committed yet, so a recap never misses the last words
said. It is also the one place that decides which of those turns a recap
covers, and under which names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from recorder.pipeline import FinalTurn
from recorder.recap.prompt import RecapTurn
from storage.records import Turn
from storage.store import TranscriptStore

__all__ = ["LedgerTurn", "TurnLedger", "turn_key"]


@dataclass(frozen=True, slots=True)
class LedgerTurn:
    """A turn as a recap tells it (a :class:`~recorder.recap.prompt.RecapTurn`)."""

    uid: int
    speaker: str
    start_ms: int
    end_ms: int
    text: str


def turn_key(turn: RecapTurn | FinalTurn) -> tuple[int, int]:
    """One turn's identity on the timeline: the stored row and the heard final share it.

    A formatted final replaces the unformatted one with the same timing, and the
    store keeps the turn's start as the pipeline placed it (bot.py ``_on_final``).
    """
    return (turn.uid, turn.start_ms)


class TurnLedger:
    """The turns a recap may cover, and which ones earlier recaps covered.

    Args:
        names: display names by uid; they win over the names turns carry (the
            store's), and turns with neither show their uid.
    """

    def __init__(self, names: Mapping[int, str] | None = None) -> None:
        self._names = dict(names or {})
        self._heard: dict[tuple[int, int], FinalTurn] = {}
        self._finals: set[tuple[int, tuple[int, int], int]] = set()
        self._recapped: set[tuple[int, int]] = set()
        self.heard_count = 0

    def __repr__(self) -> str:
        return f"<TurnLedger {self.heard_count} heard, {len(self._recapped)} recapped>"

    def add(self, turn: FinalTurn) -> bool:
        """Note a final turn; returns False for a repeat (the formatted final of a turn)."""
        self._heard[turn_key(turn)] = turn
        final = (turn.uid, turn.socket_key, turn.turn_order)
        if final in self._finals:
            return False
        self._finals.add(final)
        self.heard_count += 1
        return True

    async def read(self, store: TranscriptStore, meeting_id: int) -> list[Turn | LedgerTurn]:
        """Every turn so far, in meeting-time order: the store's plus those not committed yet.

        Raises:
            StorageError: the store could not be read.
        """
        stored = [turn async for turn in store.iter_turns(meeting_id)]
        stored_names = {turn.uid: turn.display_name for turn in stored if turn.display_name}

        def named(turn: FinalTurn) -> LedgerTurn:
            name = self._names.get(turn.uid) or stored_names.get(turn.uid) or str(turn.uid)
            return LedgerTurn(turn.uid, name, turn.start_ms, turn.end_ms, turn.text)

        merged: list[Turn | LedgerTurn] = []
        for turn in stored:
            heard = self._heard.get(turn_key(turn))
            if heard is not None and heard.text != turn.text:
                # The writer holds turns for up to half a second: the store may still
                # have the unformatted final of a turn whose formatted one was heard.
                merged.append(named(heard))
                continue
            # Committed as heard: the store is the truth from here on (memory stays small).
            self._heard.pop(turn_key(turn), None)
            merged.append(turn)
        keys = {turn_key(turn) for turn in stored}
        merged += [named(t) for key, t in self._heard.items() if key not in keys]
        merged.sort(key=lambda t: (t.start_ms, t.uid))
        return merged

    def select(
        self,
        turns: Sequence[RecapTurn],
        *,
        since_last: bool,
        leave_out: tuple[int, int] | None = None,
        is_request: Callable[[str], bool] | None = None,
    ) -> list[LedgerTurn]:
        """The turns to recap, named: all, or those no earlier recap covered; never the requests.

        Args:
            turns: every turn so far (:meth:`read`), in meeting-time order.
            since_last: leave out turns an earlier recap covered.
            leave_out: the key (:func:`turn_key`) of the turn that asked for the recap.
            is_request: whether a turn's text only asks for a recap (left out too).
        """
        return [
            LedgerTurn(
                turn.uid,
                self._names.get(turn.uid) or turn.speaker,
                turn.start_ms,
                turn.end_ms,
                turn.text,
            )
            for turn in turns
            if turn_key(turn) != leave_out
            and not (since_last and turn_key(turn) in self._recapped)
            and not (is_request is not None and is_request(turn.text))
        ]

    def mark_recapped(self, turns: Sequence[RecapTurn]) -> None:
        """Remember that a recap covered these turns (for ``since_last``)."""
        self._recapped.update(turn_key(turn) for turn in turns)
