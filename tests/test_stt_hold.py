"""SocketHold: when a participant's open socket may close (pure rules, no sockets)."""

from __future__ import annotations

import pytest

from recorder.stt.hold import SPEECH_SLACK_MS, ClosePolicy, CloseSettings, SocketHold


def hold(policy: ClosePolicy = ClosePolicy.TURN_END) -> SocketHold:
    return SocketHold(CloseSettings(policy=policy, hold_ms=500.0, idle_close_ms=2000.0))


def test_turn_end_closes_after_the_hold_once_a_final_covers_the_speech() -> None:
    h = hold()
    h.heard_speech(1000, 1100)
    h.heard_speech(1100, 1200)
    assert not h.due(1800)  # silent long enough, but no final yet: the turn is in flight
    h.heard_final(1180)
    assert h.turn_is_covered
    assert not h.due(1650)  # covered, but the hold has not passed
    assert h.due(1700)


def test_speech_after_the_final_keeps_the_socket_open_until_its_own_final() -> None:
    h = hold()
    h.heard_speech(1000, 1100)
    h.heard_final(1080)
    h.heard_speech(1500, 1600)  # the next sentence began: the final does not cover it
    assert not h.turn_is_covered
    assert not h.due(2200)
    h.heard_final(1590)
    assert h.due(2200)


def test_a_chunk_that_carries_the_last_word_tail_is_covered() -> None:
    h = hold()
    h.heard_speech(1100, 1200)
    h.heard_final(1100 - SPEECH_SLACK_MS)
    assert h.turn_is_covered
    h.heard_speech(1200 + 1, 1300)
    assert not h.turn_is_covered


def test_speech_no_final_covers_closes_after_the_idle_silence() -> None:
    h = hold()
    h.heard_speech(0, 100)  # a cough the model did not transcribe
    assert not h.due(2099)
    assert h.due(2100)


def test_a_new_socket_forgets_the_finals_of_the_last() -> None:
    h = hold()
    h.heard_speech(0, 100)
    h.heard_final(90)
    h.reset()
    assert not h.turn_is_covered
    assert not h.due(700)


def test_while_sessions_are_scarce_only_a_long_silence_closes() -> None:
    h = hold()
    h.heard_speech(0, 100)
    h.heard_final(90)
    assert h.due(700)
    assert not h.due(700, scarce=True)  # a sentence pause is not worth a session
    assert h.due(2100, scarce=True)


def test_the_idle_policy_ignores_finals() -> None:
    h = hold(ClosePolicy.IDLE)
    h.heard_speech(0, 100)
    h.heard_final(90)
    assert not h.due(1000)
    assert h.due(2100)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CloseSettings(hold_ms=-1)
