"""The sans-I/O turn engine: audio in, SpeechStarted/Turn out.

The rules it follows are in docs/providers.md, "Streaming: messages".
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_emulator_support import StandInRecognizer, chunks, silence, speech, tone

from recorder.emulator.streaming.engine import EngineOptions, TurnEngine
from recorder.emulator.streaming.params import (
    ParameterError,
    SessionParams,
    apply_update,
    parse_params,
)

FIELDS = [
    "sample_rate",
    "encoding",
    "min_turn_silence",
    "max_turn_silence",
    "vad_threshold",
    "keyterms_prompt",
    "language_detection",
    "inactivity_timeout",
    "speaker_labels",
    "max_speakers",
    "domain",
    "format_turns",
    "llm_gateway",
    "language_codes",
    "mode",
    "interruption_delay",
    "continuous_partials",
    "end_of_turn_confidence_threshold",
    "unknown",
]
PARAMS = parse_params({"speech_model": "u3-rt-pro", "sample_rate": "16000"})


def run(engine: TurnEngine, pcm: bytes, ms: int = 100) -> list[dict]:
    out: list[dict] = []
    for chunk in chunks(pcm, ms):
        out.extend(engine.receive_audio(chunk))
    return out


def make(script: list[str], params: SessionParams = PARAMS, **options: bool) -> TurnEngine:
    return TurnEngine(params, StandInRecognizer(script), EngineOptions(**options))


def turns(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "Turn"]


def test_three_sentences_give_three_finals_in_order() -> None:
    script = ["Hello", "there.", "How", "are", "you?", "Fine!"]
    engine = make(script)
    pcm = (
        speech(script[:2])
        + silence(1200)
        + speech(script[2:5])
        + silence(1200)
        + speech(script[5:])
        + silence(1200)
    )
    out = run(engine, pcm)
    finals = [m for m in turns(out) if m["end_of_turn"]]
    assert [f["transcript"] for f in finals] == ["Hello there.", "How are you?", "Fine!"]
    assert [f["turn_order"] for f in finals] == [0, 1, 2]
    # One SpeechStarted before each turn, and nothing for silence.
    kinds = [m["type"] for m in out]
    assert kinds == ["SpeechStarted", "Turn"] * 3
    for final in finals:
        assert final["turn_is_formatted"] is True
        assert final["end_of_turn_confidence"] == 1
        assert final["utterance"] == final["transcript"]
        assert all(w["word_is_final"] for w in final["words"])
        assert "language_code" not in final and "speaker_label" not in final


def test_word_times_come_from_sample_counts() -> None:
    engine = make(["one", "two."])
    out = run(engine, silence(500) + tone(200) + silence(60) + tone(300) + silence(200))
    started = out[0]
    assert started == {"type": "SpeechStarted", "timestamp": 500, "confidence": 0.9}
    words = turns(out)[0]["words"]
    assert [(w["start"], w["end"]) for w in words] == [(500, 700), (760, 1060)]


def test_pause_without_punctuation_gives_one_partial_then_max_silence_final() -> None:
    engine = make(["Let's", "ship", "it", "on", "Friday"])
    out = run(engine, speech(["Let's", "ship"]) + silence(300) + speech(["it", "on"]))
    partials = turns(out)
    # One pause of 300 ms -> exactly one partial, however many chunks it spans.
    assert len(partials) == 1
    partial = partials[0]
    assert partial["end_of_turn"] is False and partial["turn_is_formatted"] is False
    assert partial["transcript"] == "Let's ship\u2014"
    assert partial["utterance"] == "" and partial["end_of_turn_confidence"] == 0
    assert not any(w["word_is_final"] for w in partial["words"])
    out = run(engine, silence(900))  # pause after "on" reaches 100 ms: second partial
    assert [m["transcript"] for m in turns(out)] == ["Let's ship it on\u2014"]
    out = run(engine, silence(200))  # ...and max_turn_silence (1000 ms) forces the final
    (final,) = turns(out)
    assert final["end_of_turn"] is True and final["transcript"] == "Let's ship it on"
    assert final["turn_order"] == 0 == partial["turn_order"]


def test_one_large_chunk_still_splits_turns_at_the_right_pause() -> None:
    engine = make(["A.", "B.", "C"])
    pcm = speech(["A."]) + silence(150) + speech(["B."]) + silence(150) + speech(["C"])
    out = run(engine, pcm, ms=1000)
    finals = [m["transcript"] for m in turns(out) if m["end_of_turn"]]
    assert finals == ["A.", "B."]
    assert engine.has_open_turn


def test_min_turn_silence_update_applies_to_later_audio() -> None:
    engine = make(["a", "b", "c", "d"])
    engine.update(apply_update(engine.params, {"min_turn_silence": 400, "max_turn_silence": None}))
    assert engine.params.min_turn_silence_ms == 400
    assert engine.params.max_turn_silence_ms == 1000
    out = run(engine, speech(["a", "b"]) + silence(300) + speech(["c"]) + silence(500))
    assert [m["transcript"] for m in turns(out)] == ["a b c\u2014"]


def test_force_endpoint_finalises_now_and_nothing_without_a_turn() -> None:
    engine = make(["half", "said"])
    assert engine.force_endpoint() == []
    out = run(engine, tone(200) + silence(60) + tone(100))
    assert turns(out) == []
    (final,) = turns(engine.force_endpoint())
    assert final["transcript"] == "half said" and final["end_of_turn"] is True
    assert engine.force_endpoint() == []
    assert engine.turn_order == 1


def test_undecodable_speech_is_a_placeholder() -> None:
    engine = make([])
    out = run(engine, tone(2400) + silence(1100))
    partial, final = turns(out)  # no terminal punctuation: partial, then max-silence final
    assert partial["transcript"] == final["transcript"] == "[speech 2.4 s]"
    assert final["end_of_turn"] is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"language_detection": "true"}, {"language_code": "en"}),
        ({"speaker_labels": "TRUE"}, {"speaker_label": "A"}),
    ],
)
def test_optional_fields(query: dict[str, str], expected: dict[str, str]) -> None:
    params = parse_params({"speech_model": "u3-rt-pro", **query})
    engine = make(["Long", "enough", "words."], params)
    out = run(engine, speech(["x"] * 3, word_ms=400) + silence(200))
    (final,) = turns(out)
    for key, value in expected.items():
        assert final[key] == value


def test_short_turn_speaker_is_unknown() -> None:
    params = parse_params({"speech_model": "u3-rt-pro", "speaker_labels": "true"})
    out = run(make(["Hi."], params), speech(["Hi."]) + silence(200))
    assert turns(out)[0]["speaker_label"] == "UNKNOWN"


def test_early_partial_switch() -> None:
    script = ["w"] * 8 + ["end."]
    quiet = run(make(list(script)), speech(script) + silence(200))
    assert [m["end_of_turn"] for m in turns(quiet)] == [True]
    early = run(make(list(script), early_partials=True), speech(script) + silence(200))
    partial, final = turns(early)
    assert partial["end_of_turn"] is False and final["end_of_turn"] is True
    # interruption_delay 500 + 256 ms after the turn began.
    assert partial["words"][-1]["end"] <= 756 + 100


@pytest.mark.parametrize("by_parameter", [False, True])
def test_continuous_partials_switch(by_parameter: bool) -> None:
    script = ["w"] * 15 + ["end."]
    if by_parameter:  # the later `continuous_partials` query parameter
        params = parse_params({"speech_model": "u3-rt-pro", "continuous_partials": "true"})
        engine = make(list(script), params)
    else:
        engine = make(list(script), continuous_partials=True)
    out = run(engine, speech(script) + silence(200))
    partials = [m for m in turns(out) if not m["end_of_turn"]]
    assert len(partials) >= 3
    lengths = [len(p["words"]) for p in partials]
    assert lengths == sorted(lengths)


def test_formatted_final_pair_switch() -> None:
    out = run(make(["Hello,", "World."], formatted_final_pair=True), speech("ab") + silence(200))
    first, second = turns(out)
    assert (first["turn_order"], second["turn_order"]) == (0, 0)
    assert first["turn_is_formatted"] is False and first["transcript"] == "hello world"
    assert second["turn_is_formatted"] is True and second["transcript"] == "Hello, World."


def test_legacy_speech_started_has_no_confidence() -> None:
    out = run(make(["Hi."], legacy=True), speech(["Hi."]) + silence(200))
    assert out[0] == {"type": "SpeechStarted", "timestamp": 0}


def test_universal_streaming_sends_no_speech_started() -> None:
    params = dataclasses.replace(PARAMS, speech_model="universal-streaming-english")
    out = run(make(["Hi."], params), speech(["Hi."]) + silence(200))
    assert [m["type"] for m in out] == ["Turn"]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=20), max_size=6))
def test_parse_params_raises_only_parameter_error(query: dict[str, str]) -> None:
    try:
        params = parse_params({"speech_model": "u3-rt-pro", **query})
    except ParameterError as exc:
        assert exc.name in query
        assert str(exc).startswith(f"Invalid Message: {exc.name}: ")
    else:
        assert 50 <= params.min_turn_silence_ms <= 10000


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=50, max_value=1000), min_size=1, max_size=8))
def test_any_chunking_gives_the_same_messages(sizes_ms: list[int]) -> None:
    script = ["Hello", "there.", "How", "are", "you?", "Fine"]
    pcm = speech(script[:2]) + silence(1200) + speech(script[2:5]) + silence(300)
    pcm += speech(script[5:]) + silence(150)
    reference = run(make(list(script)), pcm)
    engine = make(list(script))
    out: list[dict] = []
    position, index = 0, 0
    while position < len(pcm):
        size = sizes_ms[index % len(sizes_ms)] * 32
        out.extend(engine.receive_audio(pcm[position : position + size]))
        position += size
        index += 1
    assert out == reference


@pytest.mark.parametrize(
    "query",
    [
        {"min_end_of_turn_silence_when_confident": "700", "min_turn_silence": "300"},
        {"min_turn_silence": "300", "min_end_of_turn_silence_when_confident": "700"},
    ],
)
def test_new_min_turn_silence_name_wins_over_the_alias(query: dict[str, str]) -> None:
    assert parse_params(query).min_turn_silence_ms == 300
    assert (
        parse_params({"min_end_of_turn_silence_when_confident": "700"}).min_turn_silence_ms == 700
    )
