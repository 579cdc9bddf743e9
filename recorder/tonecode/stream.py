"""Streaming tone-code decoder: an energy detector that cuts PCM16 into bursts and decodes each.

The detector works on fixed 5 ms frames counted from the first sample ever fed, and every
decision depends only on those frames, so any chunking of the same audio gives the same words.
It also exposes what the emulator needs to decide turn ends (docs/providers.md, "Streaming:
messages"): whether speech is
going on now, and how much silence ends what was fed.
"""

from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np
import numpy.typing as npt

from recorder.tonecode.modem import (
    FULL_SCALE,
    DecodedWord,
    demodulate,
    tonality,
)

__all__ = ["MERGE_GAP_MS", "StreamDecoder"]

FRAME_MS = 5.0
#: A burst ends after this much silence. Tone-code words are 60 ms apart, real speech has
#: shorter dips, which :data:`MERGE_GAP_MS` glues back together.
_END_GAP_FRAMES = 5
#: Bursts shorter than this are clicks, not speech.
_MIN_BURST_FRAMES = 4
#: Samples kept either side of a burst for the decoder's envelope.
_MARGIN_FRAMES = 2
#: Undecodable bursts less than this far apart form one segment: the emulator treats 100 ms of
#: silence as a pause (``min_turn_silence``), so shorter dips are inside speech.
MERGE_GAP_MS = 100
#: A frame is loud above the noise floor + 15 dB, never below -55 dBFS. The floor is capped at
#: -40 dBFS so that even a long burst cannot raise it to the level of the burst itself.
_FLOOR_OFFSET_DB = 15.0
_MIN_THRESHOLD_DB = -55.0
_FLOOR_CAP_DB = -40.0
#: Noise floor: the quietest frame of each 100 ms block, minimum over the last 1 s of blocks.
#: Frames that are mostly code tones are left out: a long word is not background.
_BLOCK_FRAMES = 20
_FLOOR_BLOCKS = 10
_TONAL_SHARE = 0.4
#: The floor falls at once but rises at most 2 dB per block, so that seconds of real speech
#: without a pause do not become the floor, from where a silent participant's background
#: usually is (it never tracks lower: that would only slow the rise). Background louder than
#: -55 dBFS at the start of a stream, or after silence, reads as speech for a second or two;
#: closing that burst cuts it again by its own levels, so no word in it is lost, only late.
_LOWEST_FLOOR_DB = -70.0
_FLOOR_RISE_DB = 2.0
#: When a burst is cut again, its loud frames are those above its quietest frame + 15 dB but
#: never closer than 10 dB to its loud frames (90th percentile), so a steady burst stays whole.
_BURST_HEADROOM_DB = 10.0
#: An undecodable part must be this far above the threshold to count as speech: background
#: noise near the threshold opens short bursts whose mean level is barely above it.
_SEGMENT_MARGIN_DB = 3.0
#: Bursts longer than this are not buffered for decoding (a word of ~2000 bytes).
_MAX_DECODE_MS = 60_000
#: The level of a frame of digital silence, as :meth:`StreamDecoder.feed` measures it.
_SILENT_LEVEL_DB = float(10.0 * np.log10(np.zeros(1) / FULL_SCALE**2 + 1e-12)[0])


@functools.lru_cache(maxsize=8)
def _silent_pcm(size: int) -> bytes:
    return bytes(size)


@functools.lru_cache(maxsize=8)
def _silent_samples(count: int) -> npt.NDArray[np.float32]:
    samples = np.zeros(count, dtype=np.float32)
    samples.flags.writeable = False  # shared by every stream that keeps it
    return samples


class StreamDecoder:
    """Decode one stream of PCM16 little-endian mono audio fed in arbitrary chunks.

    ``feed`` returns the words completed by that chunk and ``flush`` the rest at the end of the
    stream; together they return exactly what :func:`~recorder.tonecode.decode` returns
    for the whole audio. Times are ms from the first sample ever fed.

    Args:
        sample_rate_hz: Sample rate of the audio, at least 8000.

    Raises:
        ValueError: If the sample rate is too low for the tones.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        if sample_rate_hz < 8000:
            raise ValueError(f"sample rate {sample_rate_hz} Hz is too low; use 8000 Hz or more")
        self._rate = sample_rate_hz
        self._frame = max(1, round(FRAME_MS * sample_rate_hz / 1000))
        self._max_decode_frames = round(_MAX_DECODE_MS / FRAME_MS)
        self._fed = 0
        self._frames = 0
        self._remainder = np.zeros(0, dtype=np.float32)
        # Retained audio for decoding: chunks starting at absolute sample _kept_from.
        self._kept: list[npt.NDArray[np.float32]] = []
        self._kept_from = 0
        # Power and level of each frame from _kept_from on, as feed measured them, so closing
        # a burst does not measure its frames again.
        self._powers: list[float] = []
        self._levels: list[float] = []
        # Segmentation: the open burst (frames), its last loud frame, the latest speech.
        self._open: int | None = None
        self._last_loud = -1
        self._speech_start: int | None = None
        self._speech_end: int | None = None
        # Noise floor tracking.
        self._block_mins: deque[float] = deque(maxlen=_FLOOR_BLOCKS)
        self._floor_db = _LOWEST_FLOOR_DB
        self._block_min = math.inf
        self._threshold_db = _MIN_THRESHOLD_DB
        # The threshold each recent block was judged by, to judge a closed burst the same way
        # whatever the chunking.
        self._block_thresholds: dict[int, float] = {}
        # An undecodable segment waiting to see whether the next burst extends it.
        self._pending: DecodedWord | None = None
        self._pending_end = 0

    @property
    def position_ms(self) -> int:
        """Audio fed so far, in ms."""
        return self._ms(self._fed)

    @property
    def in_speech(self) -> bool:
        """Whether the audio fed so far ends inside a burst of speech."""
        return self._open is not None and self._last_loud - self._open + 1 >= _MIN_BURST_FRAMES

    @property
    def speech_start_ms(self) -> int | None:
        """Start of the current or latest burst of speech, or ``None`` before any."""
        return None if self._speech_start is None else self._ms(self._speech_start * self._frame)

    @property
    def trailing_silence_ms(self) -> int:
        """Silence at the end of the audio fed so far (all of it before any speech)."""
        end = 0 if self._speech_end is None else self._speech_end * self._frame
        return self._ms(self._fed - end)

    def feed(self, pcm: bytes) -> list[DecodedWord]:
        """Add audio and return the words it completes.

        Args:
            pcm: PCM16 little-endian mono, any whole number of samples.

        Returns:
            Words (and undecodable segments) that ended within the audio fed so far.

        Raises:
            ValueError: If ``pcm`` holds half a sample.
        """
        if len(pcm) % 2:
            raise ValueError(f"pcm16 needs whole samples; got {len(pcm)} bytes")
        if not pcm:
            return []
        # Digital silence (the gaps of tone code, gaps a client filled) measures the same
        # every time: no need to measure it.
        is_silent = not self._remainder.size and pcm == _silent_pcm(len(pcm))
        if is_silent:
            samples = _silent_samples(len(pcm) // 2)
        else:
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        self._kept.append(samples)
        self._fed += samples.size
        buffer = np.concatenate((self._remainder, samples)) if self._remainder.size else samples
        count = buffer.size // self._frame
        out: list[DecodedWord] = []
        if count:
            frames = buffer[: count * self._frame].reshape(count, self._frame)
            if is_silent:
                squares = np.zeros(count)
                powers, levels = [0.0] * count, [_SILENT_LEVEL_DB] * count
            else:
                squares = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
                power = squares / self._frame
                level_db = 10.0 * np.log10(power / FULL_SCALE**2 + 1e-12)
                # A few frames per chunk: plain floats are cheaper to judge than numpy calls.
                powers, levels = power.tolist(), level_db.tolist()
            self._powers += powers
            self._levels += levels
            self._segment(self._classify(levels, frames, squares), out)
        self._remainder = buffer[count * self._frame :]
        self._release_pending(out, final=False)
        self._trim()
        return out

    def flush(self) -> list[DecodedWord]:
        """End the stream: close the burst in progress and return what remains.

        Returns:
            The remaining words and undecodable segments.
        """
        out: list[DecodedWord] = []
        if self._open is not None:
            start, self._open = self._open, None
            self._close(start, self._last_loud, out, final=True)
        self._release_pending(out, final=True)
        self._trim()
        return out

    def _ms(self, samples: int) -> int:
        return round(samples * 1000 / self._rate)

    def _classify(
        self,
        levels: list[float],
        frames: npt.NDArray[np.float32],
        squares: npt.NDArray[np.float64],
    ) -> list[bool]:
        """Mark frames above the threshold, updating the noise floor block by block."""
        loud: list[bool] = []
        frame = self._frames
        i = 0
        while i < len(levels):
            j = min(len(levels), i + _BLOCK_FRAMES - frame % _BLOCK_FRAMES)
            part = levels[i:j]
            threshold = self._threshold_db
            self._block_thresholds[frame // _BLOCK_FRAMES] = threshold
            loud += [level > threshold for level in part]
            self._lower_block_min(part, frames[i:j], squares[i:j])
            frame += j - i
            i = j
            if frame % _BLOCK_FRAMES == 0:
                if self._block_min == math.inf:
                    continue  # all tones: says nothing about the background
                self._block_mins.append(self._block_min)
                self._block_min = math.inf
                lowest = max(min(self._block_mins), _LOWEST_FLOOR_DB)
                self._floor_db = min(lowest, self._floor_db + _FLOOR_RISE_DB)
                floor = min(self._floor_db, _FLOOR_CAP_DB)
                self._threshold_db = max(_MIN_THRESHOLD_DB, floor + _FLOOR_OFFSET_DB)
        return loud

    def _lower_block_min(
        self,
        part: list[float],
        frames: npt.NDArray[np.float32],
        squares: npt.NDArray[np.float64],
    ) -> None:
        """Lower the block's background minimum by the frames of ``part`` that are not tones.

        Frames below the lowest threshold are background whatever they hold, so the tone
        test (the costly part) is only run when every frame is above it, and only on frames
        that could lower the minimum.
        """
        lowest = min(part)
        if lowest >= self._block_min:
            return
        if lowest <= _MIN_THRESHOLD_DB:
            self._block_min = lowest  # the quietest frame is background
            return
        candidates = [k for k, level in enumerate(part) if level < self._block_min]
        if len(candidates) < len(part):
            frames, squares = frames[candidates], squares[candidates]
        shares = tonality(frames, self._rate, squares=squares).tolist()
        background = [
            part[k] for k, share in zip(candidates, shares, strict=True) if share < _TONAL_SHARE
        ]
        if background:
            self._block_min = min(background)

    def _segment(self, loud: list[bool], out: list[DecodedWord]) -> None:
        """Cut loud frames into bursts; close (and decode) those followed by enough silence."""
        base = self._frames
        self._frames += len(loud)
        if self._open is not None and all(loud):
            self._last_loud = self._frames - 1  # the common case inside a word: no cut
            indices: list[int] = []
        else:
            indices = [base + k for k, is_loud in enumerate(loud) if is_loud]
        if indices:
            if self._open is None:
                start = previous = indices[0]
            else:
                start, previous = self._open, self._last_loud
            for index in indices:
                if index - previous > _END_GAP_FRAMES:
                    self._open = None
                    self._close(start, previous, out)
                    start = index
                previous = index
            self._open = start
            self._last_loud = indices[-1]
        if self._open is not None:
            if self._frames - 1 - self._last_loud >= _END_GAP_FRAMES:
                start, self._open = self._open, None
                self._close(start, self._last_loud, out)
            elif self.in_speech:
                self._speech_start = self._open
                self._speech_end = self._last_loud + 1

    def _close(self, start: int, last: int, out: list[DecodedWord], *, final: bool = False) -> None:
        """Decode the burst of frames ``start..last`` and queue the results."""
        if last - start + 1 < _MIN_BURST_FRAMES:
            return
        # Judge the burst by the threshold in force when its end was decided, whatever the
        # chunking; it is the best guess at the background level.
        decided = min(last + _END_GAP_FRAMES, self._frames - 1) if final else last + _END_GAP_FRAMES
        threshold_db = self._block_thresholds.get(decided // _BLOCK_FRAMES, self._threshold_db)
        if last - start > self._max_decode_frames:
            # Too long to have been kept: not a word anyone encodes.
            begin, stop = start * self._frame, (last + 1) * self._frame
            self._queue(DecodedWord(None, self._ms(begin), self._ms(stop)), start, last, out)
            return
        for part_start, part_last, level_db in self._resegment(start, last):
            word = self._decode(part_start, part_last)
            if word.text is not None or level_db > threshold_db + _SEGMENT_MARGIN_DB:
                self._queue(word, part_start, part_last, out)

    def _queue(self, word: DecodedWord, start: int, last: int, out: list[DecodedWord]) -> None:
        """Emit a decoded word, or hold an undecodable segment to merge it with the next."""
        self._speech_start = start
        self._speech_end = last + 1
        end_sample = (last + 1) * self._frame
        if word.text is not None:
            self._release_pending(out, final=True)
            out.append(word)
            return
        if self._pending is not None:
            if start * self._frame - self._pending_end < self._ms_to_samples(MERGE_GAP_MS):
                self._pending = DecodedWord(None, self._pending.start_ms, word.end_ms)
                self._pending_end = end_sample
                return
            self._release_pending(out, final=True)
        self._pending = word
        self._pending_end = end_sample

    def _kept_audio(self, begin: int, stop: int) -> npt.NDArray[np.float32]:
        """Return the kept samples ``begin..stop`` (absolute indices, clipped to what is kept)."""
        kept = np.concatenate(self._kept) if len(self._kept) > 1 else self._kept[0]
        self._kept = [kept]
        low = max(begin, self._kept_from) - self._kept_from
        return kept[low : max(low, min(stop, self._fed) - self._kept_from)]

    def _resegment(self, start: int, last: int) -> list[tuple[int, int, float]]:
        """Cut frames ``start..last`` again by their own levels.

        A burst opened before the noise floor was known (background noise at the start of a
        stream) can hold several words glued by the noise between them; this separates them.

        Returns:
            ``(first frame, last frame, mean level in dBFS)`` of each part.
        """
        first_kept = self._kept_from // self._frame
        low = max(start, first_kept) - first_kept
        levels = self._levels[low : last + 1 - first_kept]
        if not levels:
            return []
        # The 90th percentile by nearest rank, as high_level takes it.
        high = sorted(levels)[(len(levels) - 1) * 9 // 10]
        threshold_db = max(
            _MIN_THRESHOLD_DB, min(min(levels) + _FLOOR_OFFSET_DB, high - _BURST_HEADROOM_DB)
        )
        parts = []
        first = previous = -1
        for k, level in enumerate(levels):
            if level <= threshold_db:
                continue
            if first < 0:
                first = k
            elif k - previous > _END_GAP_FRAMES:
                parts.append((first, previous))
                first = k
            previous = k
        if first >= 0:
            parts.append((first, previous))
        out = []
        for a, b in parts:
            if b - a + 1 >= _MIN_BURST_FRAMES:
                power = np.array(self._powers[low + a : low + b + 1]).mean()
                mean_db = 10.0 * math.log10(float(power) / FULL_SCALE**2 + 1e-12)
                out.append((start + a, start + b, mean_db))
        return out

    def _decode(self, start: int, last: int) -> DecodedWord:
        """Return the word in frames ``start..last``, or an undecodable segment."""
        begin, stop = start * self._frame, (last + 1) * self._frame
        unknown = DecodedWord(None, self._ms(begin), self._ms(stop))
        low = max(self._kept_from, begin - _MARGIN_FRAMES * self._frame)
        signal = self._kept_audio(low, stop + _MARGIN_FRAMES * self._frame)
        decoded = demodulate(signal, slice(begin - low, stop - low), self._rate)
        if decoded is None:
            return unknown
        text, first, end = decoded
        return DecodedWord(text, self._ms(low + round(first)), self._ms(low + round(end)))

    def _release_pending(self, out: list[DecodedWord], *, final: bool) -> None:
        """Emit the waiting undecodable segment once nothing can extend it any more."""
        if self._pending is None:
            return
        if not final:
            # Any later burst starts at a frame not yet cut (samples short of a whole frame
            # may still be its first), so judge by whole frames, not by samples fed.
            horizon = self._frames if self._open is None else self._open
            horizon *= self._frame
            if horizon - self._pending_end < self._ms_to_samples(MERGE_GAP_MS):
                return
        out.append(self._pending)
        self._pending = None

    def _ms_to_samples(self, ms: int) -> int:
        return ms * self._rate // 1000

    def _trim(self) -> None:
        """Forget audio that no burst can need any more."""
        anchor = self._frames
        if self._open is not None and self._last_loud - self._open <= self._max_decode_frames:
            anchor = self._open
        keep_from = max(0, (anchor - _MARGIN_FRAMES) * self._frame)
        oldest_block = (max(self._frames, 1) - 1) // _BLOCK_FRAMES
        if len(self._block_thresholds) > 1:  # only the block in progress is left after this
            for block in [b for b in self._block_thresholds if b < oldest_block]:
                del self._block_thresholds[block]
        kept_from = self._kept_from
        while self._kept and self._kept_from + self._kept[0].size <= keep_from:
            self._kept_from += self._kept.pop(0).size
        if self._kept and self._kept_from < keep_from:
            self._kept[0] = self._kept[0][keep_from - self._kept_from :]
            self._kept_from = keep_from
        # Frame measures are kept from the first frame of the kept audio on.
        drop = self._kept_from // self._frame - kept_from // self._frame
        if drop > 0:
            del self._powers[:drop]
            del self._levels[:drop]
