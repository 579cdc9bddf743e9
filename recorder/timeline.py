"""Map positions in the audio sent to a stream back to meeting time.

Word timestamps are relative to the audio sent on one socket (docs/providers.md,
"Streaming: messages"): they skip every mute, idle close and outage. A
:class:`Timeline` remembers, for each run of contiguous audio, where
it sits both in the stream and on the meeting clock, so any stream position
maps back to true meeting time and several speakers merge in true order.
"""

from __future__ import annotations

import bisect

__all__ = ["Timeline", "format_clock"]


def format_clock(ms: float, *, compact: bool = False) -> str:
    """Meeting time as ``hh:mm:ss`` (hours keep growing past 99).

    Args:
        ms: meeting time in milliseconds (negative counts as 0).
        compact: ``mm:ss``, with hours only past an hour (``h:mm:ss``): the live console.
    """
    seconds = max(0, int(ms // 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if compact:
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


class Timeline:
    """Piecewise mapping from stream audio position (ms) to meeting time (ms).

    Call :meth:`add` for every chunk in the order it is sent; contiguous chunks
    extend the current run, a jump on the meeting clock starts a new run.
    """

    __slots__ = ("_meeting_starts", "_stream_end_ms", "_stream_starts")

    def __init__(self) -> None:
        self._stream_starts: list[float] = []
        self._meeting_starts: list[float] = []
        self._stream_end_ms = 0.0

    @property
    def stream_end_ms(self) -> float:
        """Total audio added so far, in ms (the next chunk's stream position)."""
        return self._stream_end_ms

    def add(self, meeting_start_ms: float, duration_ms: float) -> float:
        """Record that the next ``duration_ms`` of stream audio began at ``meeting_start_ms``.

        Returns:
            The chunk's position in the stream.
        """
        position = self._stream_end_ms
        if self._stream_starts:
            expected = self._meeting_starts[-1] + (position - self._stream_starts[-1])
            if abs(meeting_start_ms - expected) < 0.5:
                self._stream_end_ms += duration_ms
                return position
        self._stream_starts.append(position)
        self._meeting_starts.append(meeting_start_ms)
        self._stream_end_ms += duration_ms
        return position

    def to_meeting_ms(self, stream_ms: float, *, is_end: bool = False) -> float:
        """Meeting time of a stream position (clamped into the audio actually sent).

        Args:
            stream_ms: position in the stream's audio.
            is_end: the position ends something (a word's end): a position on the
                boundary of two runs then belongs to the earlier run.
        """
        if not self._stream_starts:
            return stream_ms
        stream_ms = min(max(stream_ms, 0.0), self._stream_end_ms)
        find = bisect.bisect_left if is_end else bisect.bisect_right
        index = max(0, find(self._stream_starts, stream_ms) - 1)
        return self._meeting_starts[index] + (stream_ms - self._stream_starts[index])
