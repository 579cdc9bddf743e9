"""Pure tests of the sans-I/O STT protocol: messages in, events and frames out."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import ConfigError, SttConnectionError, SttProtocolError
from recorder.stt.backoff import QuickFailureTracker, RetryBudget, backoff
from recorder.stt.chunker import Chunker
from recorder.stt.events import (
    Closed,
    Disposition,
    FinalTranscript,
    PartialTranscript,
    ServerError,
    SessionStarted,
    SessionTerminated,
    SpeechStarted,
    SttWord,
)
from recorder.stt.protocol import (
    State,
    SttProtocol,
    auth_headers,
    build_url,
    classify_close,
    parse_message,
)
from recorder.stt.resend import ResendBuffer, SocketMap
from tests.support.fake_stt import turn_message

BEGIN = json.dumps({"type": "Begin", "id": "abc", "expires_at": 1779501234})


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# -- URL and auth (docs/providers.md, "Streaming: connecting") ------------------


def test_build_url_recommended_shape():
    url = build_url("wss://streaming.assemblyai.com/v3/ws", speech_model="u3-rt-pro")
    assert url.startswith("wss://streaming.assemblyai.com/v3/ws?")
    assert _query(url) == {
        "speech_model": ["u3-rt-pro"],
        "sample_rate": ["16000"],
        "encoding": ["pcm_s16le"],
        "language_detection": ["true"],
    }


def test_build_url_lists_json_booleans_lowercase_and_options():
    url = build_url(
        "ws://127.0.0.1:9/v3/ws?fault=drop&speech_model=old",
        speech_model="u3-rt-pro",
        keyterms=["Agora", "Q3 roadmap", "x" * 51],
        prompt="Transcribe Spanish.",
        inactivity_timeout_s=30,
        language_detection=False,
        min_turn_silence_ms=200,
        max_turn_silence_ms=2000,
        token="tok",
        sample_rate_hz=8000,
        encoding="pcm_mulaw",
    )
    q = _query(url)
    assert json.loads(q["keyterms_prompt"][0]) == ["Agora", "Q3 roadmap"]
    assert q["language_detection"] == ["false"]
    assert q["speech_model"] == ["u3-rt-pro"]  # ours replaces the base url's
    assert q["fault"] == ["drop"]  # other base-url knobs are kept
    assert q["prompt"] == ["Transcribe Spanish."]
    assert q["inactivity_timeout"] == ["30"]
    assert q["min_turn_silence"] == ["200"] and q["max_turn_silence"] == ["2000"]
    assert q["token"] == ["tok"]
    assert q["sample_rate"] == ["8000"] and q["encoding"] == ["pcm_mulaw"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keyterms": [f"t{i}" for i in range(101)]},
        {"inactivity_timeout_s": 4},
        {"inactivity_timeout_s": 3601},
        {"encoding": "opus"},
    ],
)
def test_build_url_rejects_values_the_server_would(kwargs):
    with pytest.raises(ConfigError):
        build_url("wss://x/v3/ws", speech_model="u3-rt-pro", **kwargs)


def test_auth_header_is_raw_key_without_bearer():
    assert auth_headers("k123") == {"Authorization": "k123"}


# -- parsing (docs/providers.md, "Streaming: messages") ---------------------------

WORDS = [("Let's", 40120, 40410), ("ship", 40450, 40700), ("Friday.", 42010, 42600)]

PARSE_CASES = [
    (BEGIN, SessionStarted("abc", 1779501234)),
    (
        json.dumps({**json.loads(BEGIN), "configuration": {"model": "u3-rt-pro"}, "new": 1}),
        SessionStarted("abc", 1779501234, model="u3-rt-pro"),
    ),
    (
        '{"type": "SpeechStarted", "timestamp": 2816, "confidence": 0.93}',
        SpeechStarted(2816, 0.93, socket_index=2, audio_offset_ms=500),
    ),
    ('{"type": "SpeechStarted", "timestamp": 2816}', SpeechStarted(2816, None, 2, 500)),
    (
        json.dumps(turn_message(3, WORDS[:2], final=False)),
        PartialTranscript(
            3,
            "Let's ship",
            (SttWord("Let's", 40120, 40410, 0.9, False), SttWord("ship", 40450, 40700, 0.9, False)),
            socket_index=2,
            audio_offset_ms=500,
        ),
    ),
    (
        json.dumps(turn_message(3, WORDS)),
        FinalTranscript(
            3,
            "Let's ship Friday.",
            (
                SttWord("Let's", 40120, 40410, 0.9, True),
                SttWord("ship", 40450, 40700, 0.9, True),
                SttWord("Friday.", 42010, 42600, 0.9, True),
            ),
            end_of_turn_confidence=1.0,
            language_code="en",
            language_confidence=0.97,
            is_formatted=True,
            socket_index=2,
            audio_offset_ms=500,
        ),
    ),
    (
        '{"type": "Termination", "audio_duration_seconds": 1794,'
        ' "session_duration_seconds": 1801.5}',
        SessionTerminated(1794.0, 1801.5, socket_index=2),
    ),
    (
        '{"type": "Error", "error_code": 3007, "error": "Input Duration Error: too fast"}',
        ServerError("Input Duration Error: too fast", 3007, socket_index=2),
    ),
    ('{"error": "legacy bare error"}', ServerError("legacy bare error", None, socket_index=2)),
    ('{"type": "Warning", "warning_code": 1, "warning": "x"}', None),
    ('{"type": "Heartbeat", "total_audio_received_ms": 61234}', None),
    ('{"type": "SpeakerRevision", "revisions": []}', None),
    ('{"type": "SomethingFrom2027", "x": [1, 2]}', None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_message(text, expected):
    event = parse_message(text, socket_index=2, audio_offset_ms=500)
    if isinstance(expected, SessionStarted):
        expected = SessionStarted(expected.id, expected.expires_at, expected.model, 2)
    assert event == expected


def test_final_caller_positions():
    event = parse_message(json.dumps(turn_message(0, WORDS)), audio_offset_ms=1000)
    assert isinstance(event, FinalTranscript)
    assert (event.start_ms, event.end_ms) == (41120, 43600)
    empty = parse_message(json.dumps(turn_message(0, [])))
    assert isinstance(empty, FinalTranscript) and empty.start_ms is None and empty.end_ms is None


def test_words_of_every_shape_parse_alike():
    """The inline check of the usual word shape and _word's careful one give the same words."""
    words = [
        {"text": "a", "start": 1, "end": 2, "confidence": 0.5},
        {"text": "b", "start": 3.4, "end": 4.6, "confidence": 1},
        {"text": "c", "start": 5, "end": 6, "confidence": None, "word_is_final": False},
        {"text": "d", "start": 7, "end": 8, "word_is_final": True, "extra": [1]},
    ]
    message = {"type": "Turn", "turn_order": 0, "end_of_turn": False, "transcript": "a b c d"}
    event = parse_message(json.dumps({**message, "words": words}))
    assert isinstance(event, PartialTranscript)
    assert event.words == (
        SttWord("a", 1, 2, 0.5, False),
        SttWord("b", 3, 5, 1.0, False),
        SttWord("c", 5, 6, None, False),
        SttWord("d", 7, 8, None, True),
    )
    assert type(event.words[1].confidence) is float


@pytest.mark.parametrize(
    ("word", "field"),
    [
        ('{"text": "a", "start": 1, "end": 2, "confidence": NaN}', "confidence"),
        ('{"text": "a", "start": 1, "end": 2, "confidence": Infinity}', "confidence"),
        ('{"text": "a", "start": true, "end": 2}', "start"),
        ('{"text": "a", "start": 1, "end": 2, "word_is_final": 1}', "word_is_final"),
        ('{"text": 1, "start": 1, "end": 2}', "text"),
        ('{"text": "a", "start": 1, "end": 2, "confidence": "high"}', "confidence"),
        ('"a"', "words"),
    ],
)
def test_an_odd_word_is_still_refused(word, field):
    with pytest.raises(SttProtocolError) as info:
        parse_message(
            '{"type": "Turn", "turn_order": 1, "end_of_turn": false, "transcript": "a",'
            f' "words": [{word}]}}'
        )
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("not json", None),
        ("[]", None),
        ('{"no_type": 1}', "type"),
        ('{"type": 5}', "type"),
        ('{"type": "Begin", "expires_at": 1}', "id"),
        ('{"type": "Begin", "id": "x", "expires_at": "soon"}', "expires_at"),
        ('{"type": "Begin", "id": "x", "expires_at": true}', "expires_at"),
        ('{"type": "SpeechStarted", "timestamp": Infinity}', "timestamp"),
        ('{"type": "SpeechStarted", "timestamp": NaN}', "timestamp"),
        ('{"type": "Turn", "end_of_turn": true, "transcript": "x"}', "turn_order"),
        ('{"type": "Turn", "turn_order": 1, "end_of_turn": 1, "transcript": "x"}', "end_of_turn"),
        ('{"type": "Turn", "turn_order": 1, "end_of_turn": true, "transcript": 3}', "transcript"),
        (
            '{"type": "Turn", "turn_order": 1, "end_of_turn": true, "transcript": "x",'
            ' "words": {}}',
            "words",
        ),
        (
            '{"type": "Turn", "turn_order": 1, "end_of_turn": true, "transcript": "x",'
            ' "words": [{"text": "x", "start": 1}]}',
            "end",
        ),
        ('{"type": "Error", "error_code": "3005", "error": "x"}', "error_code"),
    ],
)
def test_parse_malformed_names_the_field(text, field):
    with pytest.raises(SttProtocolError) as info:
        parse_message(text)
    assert info.value.field == field


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_raises_only_protocol_errors_on_text(text):
    try:
        parse_message(text)
    except SttProtocolError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["type", "id", "expires_at", "timestamp", "turn_order", "end_of_turn", "transcript", "words"]
    + ["text", "start", "end", "error", "error_code", "confidence", "language_code"]
)
_types = st.sampled_from(["Begin", "Turn", "SpeechStarted", "Termination", "Error", "Other"])


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(_keys, _json | _types, max_size=8),
    st.lists(st.dictionaries(_keys, _json, max_size=6), max_size=3),
)
def test_parser_raises_only_protocol_errors_on_json(message, words):
    if "words" in message:
        message["words"] = words
    try:
        parse_message(json.dumps(message))
    except SttProtocolError:
        pass


# -- the state machine -----------------------------------------------------------


def test_protocol_happy_path_frames_and_events():
    proto = SttProtocol(socket_index=1, audio_offset_ms=2000)
    assert proto.state is State.CONNECTING
    with pytest.raises(RuntimeError):
        proto.send_audio(b"\0" * 3200)  # not before Begin
    proto.receive_text(BEGIN)
    assert proto.state is State.OPEN and proto.session_id == "abc"
    proto.send_audio(b"\1" * 3200)
    proto.send_update_configuration(keyterms_prompt=[], max_turn_silence=2000, prompt=None)
    proto.send_force_endpoint()
    proto.send_keepalive()
    proto.send_terminate()
    assert proto.state is State.TERMINATING
    assert proto.data_to_send() == [
        b"\1" * 3200,
        '{"type": "UpdateConfiguration", "keyterms_prompt": [], "max_turn_silence": 2000}',
        '{"type": "ForceEndpoint"}',
        '{"type": "KeepAlive"}',
        '{"type": "Terminate"}',
    ]
    assert proto.data_to_send() == []
    assert proto.audio_bytes_sent == 3200 and proto.audio_seconds_sent == 0.1
    proto.receive_text(json.dumps(turn_message(0, WORDS)))
    proto.receive_text(
        '{"type": "Termination", "audio_duration_seconds": 1, "session_duration_seconds": 2}'
    )
    proto.receive_close(1000, "")
    assert proto.state is State.CLOSED
    events = proto.events_received()
    assert [type(e) for e in events] == [
        SessionStarted,
        FinalTranscript,
        SessionTerminated,
        Closed,
    ]
    assert events[1].socket_index == 1 and events[1].audio_offset_ms == 2000
    assert events[-1] == Closed(1000, "", Disposition.DONE, "", 1)
    assert proto.events_received() == []


@pytest.mark.parametrize("size", [0, 1598, 32002, 64000])
def test_protocol_refuses_chunks_outside_50_to_1000_ms(size):
    proto = SttProtocol()
    proto.receive_text(BEGIN)
    with pytest.raises(ValueError):
        proto.send_audio(b"\0" * size)


def test_malformed_messages_are_skipped_and_logged_once(caplog):
    proto = SttProtocol()
    proto.receive_text(BEGIN)
    for bad in ["{oops", "[]", '{"type": "Turn"}', '{"type": "Turn", "turn_order": "x"}']:
        proto.receive_text(bad)
    proto.receive_text(json.dumps(turn_message(0, WORDS[:1])))
    events = proto.events_received()
    assert [type(e) for e in events] == [SessionStarted, FinalTranscript]
    assert proto.malformed_count == 4
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1


def test_unformatted_then_formatted_final_both_handed_on():
    # Universal-Streaming with format_turns: same turn_order twice.
    proto = SttProtocol()
    proto.receive_text(BEGIN)
    raw = turn_message(0, [("hello", 0, 300), ("world", 350, 700)], formatted=False)
    nice = turn_message(0, [("Hello", 0, 300), ("world.", 350, 700)], formatted=True)
    proto.receive_text(json.dumps(raw))
    proto.receive_text(json.dumps(nice))
    finals = [e for e in proto.events_received() if isinstance(e, FinalTranscript)]
    assert [(f.turn_order, f.transcript, f.is_formatted) for f in finals] == [
        (0, "hello world", False),
        (0, "Hello world.", True),
    ]


def test_second_begin_ignored_and_close_once():
    proto = SttProtocol()
    proto.receive_text(BEGIN)
    proto.receive_text(BEGIN.replace("abc", "def"))
    proto.receive_close(1006, "")
    proto.receive_close(1000, "")
    events = proto.events_received()
    assert [type(e) for e in events] == [SessionStarted, Closed]
    assert proto.session_id == "abc"
    assert events[1].disposition is Disposition.RETRY


# -- close classification (docs/providers.md, "Streaming: close codes") -------------

KEY = "check ASSEMBLYAI_API_KEY"
CLOSE_CASES = [
    # code, reason, terminated, inactivity_timeout_set, disposition, hint contains
    (1000, "", True, False, Disposition.DONE, ""),
    (1000, "", False, False, Disposition.RETRY, ""),
    (1006, "", False, False, Disposition.RETRY, ""),
    (None, "", False, False, Disposition.RETRY, ""),
    (1006, "", True, False, Disposition.DONE, ""),
    (
        1008,
        "Unauthorized Connection: Missing Authorization header",
        False,
        False,
        Disposition.FATAL,
        KEY,
    ),
    (1008, "Unauthorized Connection: insufficient balance", False, False, Disposition.FATAL, KEY),
    (
        1008,
        "Unauthorized connection: Too many concurrent sessions",
        False,
        False,
        Disposition.RETRY,
        "",
    ),
    (1009, "", False, False, Disposition.FATAL, "128 KB"),
    (1011, "", False, False, Disposition.RETRY, ""),
    (3005, "Session Cancelled: An error occurred", False, False, Disposition.RETRY, ""),
    (3006, "Invalid JSON: {oops", False, False, Disposition.FATAL, "bug"),
    (3006, "Invalid Message Type: Foo", False, True, Disposition.FATAL, "bug"),
    (3006, "Session idle for too long", False, True, Disposition.REOPEN_ON_AUDIO, ""),
    (3006, "", False, True, Disposition.REOPEN_ON_AUDIO, ""),
    (3006, "", False, False, Disposition.FATAL, "bug"),
    (
        3007,
        "Input duration violation: 20 ms. Expected between 50 and 1000 ms",
        False,
        False,
        Disposition.FATAL,
        "pacing",
    ),
    (
        3007,
        "Audio Transmission Rate Exceeded: Received 314.9 sec. audio in 1.3 sec",
        False,
        False,
        Disposition.FATAL,
        "pacing",
    ),
    (
        3008,
        "Session Expired: Maximum session duration exceeded",
        False,
        False,
        Disposition.REOPEN,
        "",
    ),
    (
        3009,
        "Unauthorized Connection: Too many concurrent sessions",
        False,
        False,
        Disposition.RETRY,
        "",
    ),
    (4001, "Not Authorized", False, False, Disposition.FATAL, KEY),
    (4002, "Insufficient Funds", False, False, Disposition.FATAL, KEY),
    (4003, "paid only", False, False, Disposition.FATAL, KEY),
    (4008, "Session Expired", False, False, Disposition.RETRY, ""),
    (4029, "too fast", False, False, Disposition.RETRY, ""),
    (1001, "going away", False, False, Disposition.RETRY, ""),
    (1012, "service restart", False, False, Disposition.RETRY, ""),
    (1002, "", False, False, Disposition.FATAL, "protocol"),
    (1007, "", False, False, Disposition.FATAL, "protocol"),
]


@pytest.mark.parametrize(
    ("code", "reason", "terminated", "idle", "disposition", "hint"), CLOSE_CASES
)
def test_classify_close(code, reason, terminated, idle, disposition, hint):
    got, got_hint = classify_close(code, reason, terminated=terminated, inactivity_timeout_set=idle)
    assert got is disposition
    assert hint in got_hint
    assert bool(got_hint) is (disposition is Disposition.FATAL)


# -- chunker (docs/providers.md, "Streaming: audio") --------------------------------


def _chunker() -> Chunker:
    return Chunker(chunk_bytes=3200, min_bytes=1600, max_bytes=32000)


def test_chunker_passes_ready_chunks_through_without_copy():
    chunker = _chunker()
    pcm = bytes(range(256)) * 25  # 6400 B = 200 ms
    assert chunker.push(pcm)[0] is pcm
    assert chunker.push(b"\0" * 320) == []  # 10 ms frames are batched
    assert chunker.buffered == 320


def test_chunker_batches_10ms_frames_into_100ms():
    chunker = _chunker()
    out = []
    for i in range(25):
        out += chunker.push(bytes([i]) * 320)
    assert [len(c) for c in out] == [3200, 3200]
    assert out[0] == b"".join(bytes([i]) * 320 for i in range(10))
    tail = chunker.flush()
    assert tail is not None and len(tail) == 1600  # 50 ms, padded with silence
    assert tail[:1600] == b"".join(bytes([i]) * 320 for i in range(20, 25))
    assert chunker.flush() is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40000).map(lambda b: b[: len(b) // 2 * 2]), max_size=20))
def test_chunker_preserves_every_byte_and_bounds_sizes(parts):
    chunker = _chunker()
    out = []
    for part in parts:
        out += chunker.push(part)
    tail = chunker.flush()
    data = b"".join(parts)
    assert all(3200 <= len(c) <= 32000 for c in out)
    joined = b"".join(out)
    if tail is not None:
        assert 1600 <= len(tail) <= 3200
        assert tail[: len(data) - len(joined)] == data[len(joined) :]
        assert set(tail[len(data) - len(joined) :]) <= {0}
    else:
        assert joined == data


# -- backoff ---------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_with_jitter():
    no_jitter = backoff(initial_s=0.5, max_s=4, rand=lambda: 0.0)
    assert [next(no_jitter) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    full = backoff(initial_s=0.5, max_s=4, jitter=0.5, rand=lambda: 1.0)
    assert [next(full) for _ in range(4)] == [0.25, 0.5, 1, 2]


def test_quick_failure_tracker():
    tracker = QuickFailureTracker(window_s=5, limit=3)
    assert not tracker.record(1) and not tracker.record(1)
    assert not tracker.record(60)  # a healthy socket resets the streak
    assert not tracker.record(1) and not tracker.record(2)
    assert tracker.record(0.1)


# -- resend buffer and socket map ---------------------------------------------------


def _buffer(**kwargs) -> ResendBuffer:
    kwargs.setdefault("resend_max_bytes", 10 * 32000)
    kwargs.setdefault("backlog_max_bytes", 10 * 32000)
    return ResendBuffer(sample_bytes=2, min_bytes=1600, max_bytes=32000, silence=0, **kwargs)


def _feed(buf: ResendBuffer, n: int, size: int = 3200) -> None:
    for i in range(n):
        buf.queue(i * size, bytes([i]) * size)


def test_replay_buffer_rewinds_from_the_end_of_the_last_final():
    buf = _buffer()
    _feed(buf, 5)
    while buf.pending:
        buf.mark_sent(*buf.take())
    buf.finalised_up_to(2 * 3200 + 1000)  # ends inside chunk 2
    buf.rewind()
    assert [(pos, len(c)) for pos, c in buf.pending] == [(7400, 2200), (9600, 3200), (12800, 3200)]
    assert buf.pending[0][1] == bytes([2]) * 2200
    assert buf.pending_bytes == 2200 + 6400 and buf.sent_bytes == 0


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (3200 + 2800, [(6000, 400 + 3200)]),  # a short head is merged with the next chunk
        (3200 + 1600, [(4800, 1600), (6400, 3200)]),  # exactly 50 ms: kept
    ],
)
def test_replay_buffer_short_head_merge(end, expected):
    buf = _buffer()
    _feed(buf, 3)
    while buf.pending:
        buf.mark_sent(*buf.take())
    buf.finalised_up_to(end)
    buf.rewind()
    assert [(pos, len(c)) for pos, c in buf.pending] == expected


def test_replay_buffer_pads_a_lone_short_head():
    buf = _buffer()
    _feed(buf, 2)
    while buf.pending:
        buf.mark_sent(*buf.take())
    buf.finalised_up_to(3200 + 3000)
    buf.rewind()
    assert [(pos, len(c)) for pos, c in buf.pending] == [(6200, 1600)]
    assert buf.pending[0][1] == bytes([1]) * 200 + bytes(1400)


def test_replay_buffer_bounds():
    buf = _buffer(resend_max_bytes=3 * 3200, backlog_max_bytes=2 * 3200)
    assert buf.queue(0, b"\1" * 3200) is None
    assert buf.queue(3200, b"\1" * 3200) is None
    assert buf.queue(6400, b"\1" * 3200) == (0, 3200)  # the oldest unsent chunk is dropped
    for i in range(5):
        buf.mark_sent(i * 3200, b"\2" * 3200)
    assert buf.sent_bytes == 3 * 3200  # older sent audio can no longer be replayed
    assert buf.has_unfinalised
    buf.forget_sent()
    while buf.pending:
        buf.take()
    assert not buf.has_unfinalised


def test_socket_map_pieces():
    m = SocketMap(1000)
    m.add(1000, 3200)
    m.add(4200, 3200)
    assert m.is_contiguous and m.offset_at(5000) == 1000
    m.add(20000, 3200)  # a gap: stream byte 6400 is caller byte 20000
    assert not m.is_contiguous
    assert m.offset_at(100) == 1000 and m.offset_at(6400) == 20000 - 6400


def test_retry_budget_gives_up_after_the_bounded_time():
    budget = RetryBudget(
        initial_s=1, max_s=4, give_up_s=10, quick_failure_s=5, quick_failure_limit=2
    )
    now, waited = 0.0, []
    with pytest.raises(SttConnectionError) as info:
        while True:
            delay = budget.next_delay(now, "HTTP 503")
            waited.append(delay)
            now += delay
    assert now <= 10 and len(waited) >= 3
    assert "gave up reconnecting" in str(info.value) and "HTTP 503" in str(info.value)
    budget.socket_opened()  # a Begin starts a fresh streak
    assert budget.next_delay(100.0, "x") <= 1
    budget.socket_closed(1.0, "code 1011")
    with pytest.raises(SttConnectionError, match="2 times in a row"):
        budget.socket_closed(1.0, "code 1011")
