"""The sans-I/O Voice Agent protocol: parsing, commands, states and close codes (no event loop)."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.agent.protocol import (
    Action,
    AgentProtocol,
    AgentTranscript,
    Closed,
    ReplyAudio,
    ReplyDone,
    ReplyError,
    ReplyStarted,
    SessionConfig,
    SessionEnded,
    SessionError,
    SessionReady,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    State,
    ToolCall,
    UserTranscript,
    UserTranscriptDelta,
    close_action,
    error_action,
    parse_event,
)
from recorder.errors import AgentError, AgentProtocolError

PCM = bytes(range(256)) * 4

# The service's documented event examples, verbatim, and what each must parse to
# (https://www.assemblyai.com/docs/voice-agents/voice-agent-api/events-reference).
EXAMPLES = [
    (
        '{"type": "session.ready", "session_id": "sess_3c1f0a9e5b7d4e2fa8c6b1d0e9f7a4c2"}',
        SessionReady("sess_3c1f0a9e5b7d4e2fa8c6b1d0e9f7a4c2"),
    ),
    ('{"type": "session.updated"}', SessionUpdated()),
    (
        '{"type": "session.error", "code": "immutable_field", "message": "greeting cannot be'
        ' changed after the session starts", "param": "greeting"}',
        SessionError(
            "immutable_field", "greeting cannot be changed after the session starts", "greeting"
        ),
    ),
    (
        '{"type": "session.ended", "session_duration_seconds": 94.2, '
        '"audio_duration_seconds": 88.0, "timestamp": 1779502345.12}',
        SessionEnded(94.2, 88.0),
    ),
    (
        '{"type": "session.ended", "session_duration_seconds": 3, "audio_duration_seconds": null}',
        SessionEnded(3.0, None),
    ),
    ('{"type": "input.speech.started"}', SpeechStarted()),
    ('{"type": "input.speech.stopped"}', SpeechStopped()),
    (
        '{"type": "transcript.user.delta", "text": "Can you repeat the"}',
        UserTranscriptDelta("Can you repeat the"),
    ),
    (
        '{"type": "transcript.user", "text": "Can you repeat the last point?", '
        '"item_id": "item_9a41"}',
        UserTranscript("Can you repeat the last point?", "item_9a41"),
    ),
    ('{"type": "reply.started", "reply_id": "reply_51c0"}', ReplyStarted("reply_51c0")),
    (
        '{"type": "reply.audio", "data": "AAABAAIAAwAEAAUA"}',
        ReplyAudio(bytes.fromhex("000001000200030004000500")),
    ),
    (
        '{"type": "transcript.agent", "text": "Ana agreed to ship the beta on Friday.", '
        '"reply_id": "reply_51c0", "item_id": "item_9a41", "interrupted": false}',
        AgentTranscript("Ana agreed to ship the beta on Friday.", False, "reply_51c0", "item_9a41"),
    ),
    (
        '{"type": "transcript.agent", "text": "Ana agreed to ship", "reply_id": "reply_51c0", '
        '"item_id": "item_9a41", "interrupted": true}',
        AgentTranscript("Ana agreed to ship", True, "reply_51c0", "item_9a41"),
    ),
    ('{"type": "reply.done", "status": "completed"}', ReplyDone("completed")),
    ('{"type": "reply.done", "status": "interrupted"}', ReplyDone("interrupted")),
    ('{"type": "reply.done"}', ReplyDone("completed")),  # no status: completed
    (
        '{"type": "tool.call", "call_id": "call_7d2e", "name": "lookup_note", '
        '"arguments": {"topic": "beta"}}',
        ToolCall("call_7d2e", "lookup_note", {"topic": "beta"}),
    ),
    (
        '{"type": "reply.error", "code": "llm_error", "message": "upstream failure", '
        '"reply_id": "reply_51c0", "retryable": true}',
        ReplyError("llm_error", "upstream failure", "reply_51c0"),
    ),
    # Pre-GA non-fatal "error" event with a nested body.
    (
        '{"type": "error", "error": {"code": "invalid_value", "message": "bad"}}',
        SessionError("invalid_value", "bad"),
    ),
]


@pytest.mark.parametrize(("frame", "expected"), EXAMPLES)
def test_parses_every_documented_event(frame: str, expected: object) -> None:
    assert parse_event(frame) == expected


def test_unknown_events_and_fields_are_ignored() -> None:
    assert parse_event('{"type": "transcript.agent.delta", "delta": "Ana "}') is None
    assert parse_event('{"type": "future.thing"}') is None
    event = parse_event('{"type": "reply.done", "status": "completed", "extra": [1, 2]}')
    assert event == ReplyDone("completed")


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ("not json", None),
        ("[1, 2]", None),
        ('{"no": "type"}', "type"),
        ('{"type": 7}', "type"),
        ('{"type": "session.ready"}', "session_id"),
        ('{"type": "session.ready", "session_id": 5}', "session_id"),
        ('{"type": "reply.audio"}', "data"),
        ('{"type": "reply.audio", "data": "not base64!"}', "data"),
        ('{"type": "transcript.agent"}', "text"),
        ('{"type": "tool.call", "call_id": "c", "name": "n", "arguments": "{}"}', "arguments"),
    ],
)
def test_malformed_frames_raise_naming_the_field(frame: str, field: str | None) -> None:
    with pytest.raises(AgentProtocolError) as caught:
        parse_event(frame)
    assert caught.value.field == field
    assert isinstance(caught.value, AgentError)
    message = str(caught.value)
    assert message[0].islower() and not message.endswith(".")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_parser_raises_only_its_own_error_on_arbitrary_input(data: str | bytes) -> None:
    try:
        parse_event(data)
    except AgentProtocolError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
event_types = st.sampled_from(
    [
        "session.ready",
        "session.error",
        "error",
        "session.ended",
        "transcript.user",
        "transcript.user.delta",
        "reply.audio",
        "transcript.agent",
        "reply.done",
        "tool.call",
        "reply.error",
        "reply.started",
    ]
)


@settings(max_examples=200, deadline=None)
@given(event_types, st.dictionaries(st.text(max_size=24), json_values, max_size=6))
def test_parser_survives_any_shape_of_a_known_event(kind: str, fields: dict[str, object]) -> None:
    fields["type"] = kind
    for name in ("session_id", "data", "text", "code", "message", "status", "arguments"):
        if name in fields and fields[name] is None:
            del fields[name]
    try:
        parse_event(json.dumps(fields))
    except AgentProtocolError:
        pass


def test_protocol_skips_malformed_frames_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    protocol = AgentProtocol()
    with caplog.at_level(logging.WARNING, logger="recorder.agent"):
        protocol.receive_text("{oops")
        protocol.receive_bytes(b"\x00\x01")
        protocol.receive_text('{"type": "session.ready", "session_id": "sess_1"}')
    assert protocol.events_received() == [SessionReady("sess_1")]
    assert protocol.parse_errors == 2
    assert protocol.state is State.READY
    assert protocol.session_id == "sess_1"
    assert "skipped" in caplog.text


def test_commands_match_the_documented_shapes() -> None:
    protocol = AgentProtocol()
    config = SessionConfig(
        system_prompt="Be brief.",
        greeting="Hello there.",
        voice="ivy",
        volume=100,
        keyterms=tuple(f"k{i}" for i in range(150)),
        interrupt_response=False,
    )
    protocol.send_session_update(config)
    protocol.send_reply_create("Read this: hi")
    protocol.send_reply_create()
    protocol.send_input_audio(PCM)
    protocol.send_session_end()
    frames = [json.loads(frame) for frame in protocol.data_to_send()]
    assert protocol.data_to_send() == []
    update = frames[0]
    assert update["type"] == "session.update"
    session = update["session"]
    assert session["system_prompt"] == "Be brief."
    assert session["greeting"] == "Hello there."
    assert session["output"] == {"voice": "ivy", "format": {"encoding": "audio/pcm"}, "volume": 100}
    assert len(session["input"]["keyterms"]) == 100  # at most 100
    assert session["input"]["turn_detection"] == {"interrupt_response": False}
    assert frames[1] == {"type": "reply.create", "instructions": "Read this: hi"}
    assert frames[2] == {"type": "reply.create"}
    assert frames[3]["type"] == "input.audio"
    assert base64.b64decode(frames[3]["audio"]) == PCM  # field "audio", not "data"
    assert frames[4] == {"type": "session.end"}
    assert protocol.state is State.ENDING


def test_minimal_update_leaves_defaults_to_the_server() -> None:
    message = SessionConfig(output_encoding=None).to_message()
    assert message == {"type": "session.update", "session": {}}


def test_session_lifecycle_states() -> None:
    protocol = AgentProtocol()
    assert protocol.state is State.OPENING
    protocol.receive_text('{"type": "session.ready", "session_id": "sess_a"}')
    assert protocol.state is State.READY
    protocol.send_session_end()
    assert protocol.state is State.ENDING
    protocol.receive_text('{"type": "session.ended", "session_duration_seconds": 1.5}')
    protocol.receive_close(1000, "")
    events = protocol.events_received()
    assert events[-1] == Closed(1000, "", Action.DONE)
    assert protocol.state is State.CLOSED
    assert protocol.is_ended


@pytest.mark.parametrize(
    ("code", "action"),
    [
        ("UNAUTHORIZED", Action.FATAL),
        ("unauthorized", Action.FATAL),
        ("FORBIDDEN", Action.FATAL),
        ("INTERNAL_ERROR", Action.RETRY),
        ("server_error", Action.RETRY),
        ("session_not_found", Action.NEW_SESSION),
        ("session_forbidden", Action.FATAL),
        ("session_expired", Action.NEW_SESSION),
        ("agent_timeout", Action.RETRY),
        ("agent_not_found", Action.FATAL),
        ("invalid_format", Action.LOG),
        ("invalid_audio", Action.LOG),
        ("invalid_value", Action.FATAL),
        ("immutable_field", Action.LOG),
        ("invalid_config", Action.FATAL),
        ("at_capacity", Action.RETRY),
        ("something_new", Action.FATAL),
    ],
)
def test_error_codes_are_classified_as_documented(code: str, action: Action) -> None:
    assert error_action(code) is action
    assert SessionError(code, "x").action is action


@pytest.mark.parametrize(
    ("code", "is_ended", "action"),
    [
        (1000, True, Action.DONE),
        (1000, False, Action.RETRY),  # a close without session.ended is a drop
        (1008, False, Action.FATAL),
        (1008, True, Action.NEW_SESSION),  # the session-duration cap
        (1011, False, Action.RETRY),
        (1006, False, Action.RETRY),
        (None, False, Action.RETRY),
    ],
)
def test_close_codes_are_classified(code: int | None, is_ended: bool, action: Action) -> None:
    assert close_action(code, is_ended=is_ended) is action


def test_reply_audio_repr_hides_the_audio() -> None:
    assert "audio" not in repr(ReplyAudio(PCM, "r1")).replace("ReplyAudio", "")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=60), st.binary(max_size=60)), max_size=8))
def test_protocol_never_raises_on_any_frames(frames: list[str | bytes]) -> None:
    protocol = AgentProtocol()
    for frame in frames:
        if isinstance(frame, str):
            protocol.receive_text(frame)
        else:
            protocol.receive_bytes(frame)
    protocol.receive_close(None)
    events = protocol.events_received()
    assert isinstance(events[-1], Closed) and events[-1].action is Action.RETRY


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2_000))
def test_reply_audio_round_trips_any_bytes(pcm: bytes) -> None:
    frame = json.dumps({"type": "reply.audio", "data": base64.b64encode(pcm).decode()})
    assert parse_event(frame) == ReplyAudio(pcm)
