"""The spoken recap: the bot speaks a summary of the meeting into the channel when asked.

One module per job, imported by path (this package re-exports nothing, so the
CLI can read :mod:`~recorder.recap.settings` without loading the rest):

- ``settings``: :class:`RecapSettings` and the defaults (light: the CLI imports it).
- ``triggers``: the spoken phrase, the timer on the meeting clock, the trigger types.
- ``ledger``: which turns a recap covers, from the store and from what was just heard.
- ``prompt``: those turns as the agent's prompt, within a budget.
- ``reply``: one Voice Agent session speaking one recap.
- ``player``: its audio published into the channel, paced, stopped on barge-in.
- ``outcome``: what one recap did (the stored note's meta).
- ``observer``: :class:`RecapObserver`, which ties them to a recording.
"""

from __future__ import annotations

__all__: list[str] = []
