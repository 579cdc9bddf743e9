"""The async emulator's create-request rules, over real HTTP on loopback.

Spec: /work/shared/specs/assemblyai-async-transcription.md, section 11 items 6-9 and 16,
section 6 (speech models).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from recorder.emulator.batch import Account, BatchBehaviour, BatchEmulator, KeyScope
from tests.test_emulator_batch_scoping import Api

DEPRECATED_SINGULAR = (
    'speech_model is deprecated. Use "speech_models" instead. See documentation: '
    "https://www.assemblyai.com/docs/pre-recorded-audio/select-the-speech-model"
)
MARCH_MODELS = (
    '"speech_models" must be a non-empty list containing one or more of: '
    '"universal-3-pro", "universal-2"'
)
LATE_MODELS = (
    '"speech_models" must be a non-empty list containing one or more of: '
    '"assemblyai-stt-3-7", "universal-3-5-pro", "universal-2"'
)
JULY_DEPRECATED = (
    'The "universal-3-pro" speech model(s) have been deprecated. '
    'Use speech_models: ["universal-3-5-pro", "universal-2"] instead.'
)


async def refusals(behaviour: BatchBehaviour, *requests: dict[str, Any]) -> list[tuple[int, Any]]:
    """Each create request's status and error text (the audio URL need not exist)."""
    answers = []
    async with BatchEmulator(behaviour=behaviour).serve() as server:
        api = Api(server.url, "k")
        for params in requests:
            status, body = await api.call("POST", "/v2/transcript", {"audio_url": "x", **params})
            answers.append((status, body.get("error")))
    return answers


async def test_march_2026_requires_speech_models_from_its_two_models() -> None:
    answers = await refusals(
        BatchBehaviour(speech_models_policy="march-2026"),
        {},
        {"speech_models": []},
        {"speech_models": ["universal-3-5-pro"]},
        {"speech_models": ["universal-3-pro", "universal-2"]},
        {"speech_model": "best"},
    )
    assert answers == [
        (400, MARCH_MODELS),
        (400, MARCH_MODELS),
        (400, MARCH_MODELS),
        (200, None),
        (400, DEPRECATED_SINGULAR),
    ]


async def test_late_2026_refuses_retired_names_and_lists_its_models() -> None:
    answers = await refusals(
        BatchBehaviour(),
        {"speech_models": ["best"]},
        {"speech_models": ["universal-3-5-pro", "nano"]},
        {"speech_models": ["assemblyai-stt-3-7", "universal-2"]},
        {"speech_models": "universal-2"},
        {"speech_model": "universal-2"},
        {"speech_model": None},  # an SDK's explicit null is no model at all
    )
    assert answers == [
        (400, LATE_MODELS),
        (400, LATE_MODELS),
        (200, None),
        (400, "speech_models must be a list"),
        (400, DEPRECATED_SINGULAR),
        (200, None),
    ]


async def test_a_deprecated_model_is_routed_or_refused_by_the_switch() -> None:
    refused = await refusals(
        BatchBehaviour(speech_models_policy="mid-2026", deprecated_models="reject"),
        {"speech_models": ["universal-3-pro", "universal-2"]},
        {"speech_models": ["universal-3-5-pro", "universal-2"]},
    )
    assert refused == [(400, JULY_DEPRECATED), (200, None)]
    behaviour = BatchBehaviour(speech_models_policy="mid-2026")
    async with BatchEmulator(behaviour=behaviour).serve() as server:
        api = Api(server.url, "k")
        routed = await api.transcribe("Hi.", speech_models=["universal-3-pro", "universal-2"])
        default = await api.transcribe("Hi.")
    assert routed["speech_model_used"] == "universal-3-5-pro"
    assert default["speech_models"] is None and default["speech_model_used"] == "universal-3-pro"


@pytest.mark.parametrize(
    ("created", "today", "model"),
    [
        (date(2026, 11, 17), date(2026, 11, 20), "assemblyai-stt-3-7"),  # a new account
        (date(2026, 1, 1), date(2026, 12, 7), "universal-3-5-pro"),  # before the switch
        (date(2026, 1, 1), date(2026, 12, 8), "assemblyai-stt-3-7"),  # everyone after it
    ],
)
async def test_late_2026_default_model_follows_the_account_and_the_date(
    created: date, today: date, model: str
) -> None:
    emulator = BatchEmulator(
        key_scopes={"k": KeyScope("acme", "p")},
        accounts={"acme": Account(created=created)},
        behaviour=BatchBehaviour(today=today),
    )
    async with emulator.serve() as server:
        done = await Api(server.url, "k").transcribe("Hi.")
    assert done["speech_model_used"] == model


async def test_the_model_used_is_the_first_that_speaks_the_language() -> None:
    async with BatchEmulator().serve() as server:
        api = Api(server.url, "k")
        models = ["universal-3-5-pro", "universal-2"]
        dutch = await api.transcribe("Hallo.", speech_models=models, language_code="nl")
        french = await api.transcribe("Salut.", speech_models=models, language_code="fr")
    assert dutch["speech_model_used"] == "universal-2"
    assert french["speech_model_used"] == "universal-3-5-pro"


async def test_prompting_rules() -> None:
    u2, u3 = ["universal-2"], ["universal-3-5-pro", "universal-2"]
    answers = await refusals(
        BatchBehaviour(),
        {"prompt": "a meeting", "keyterms_prompt": ["Acme"]},
        {"speech_models": u2, "keyterms_prompt": [f"term {i}" for i in range(201)]},
        {"speech_models": u3, "keyterms_prompt": [f"term {i}" for i in range(201)]},
        {"speech_models": u3, "keyterms_prompt": [f"term {i}" for i in range(1001)]},
        {"speech_models": u3, "keyterms_prompt": ["one two three four five six seven"]},
        {"speech_models": u3, "keyterms_prompt": ["one two three four five six"]},
        {"speech_models": u2, "prompt": "a meeting"},
        {"speech_models": u2, "temperature": 0.2},
        {"speech_models": u2, "remove_audio_tags": "all"},
        {"speech_models": u3, "prompt": "a meeting", "temperature": 0.2},
    )
    statuses = [status for status, _ in answers]
    assert statuses == [400, 400, 200, 400, 400, 200, 400, 400, 400, 200]
    assert "cannot be used in the same request" in answers[0][1]
    assert "at most 200 terms" in answers[1][1] and "at most 1000 terms" in answers[3][1]
    assert "at most 6 words" in answers[4][1]
    assert [error.split(" ")[0] for _, error in answers[6:9]] == [
        "prompt",
        "temperature",
        "remove_audio_tags",
    ]


async def test_a_language_set_by_hand_refuses_a_feature_it_lacks() -> None:
    answers = await refusals(
        BatchBehaviour(feature_languages={"speaker_labels": frozenset({"en", "de"})}),
        {"language_code": "fr", "speaker_labels": True},
        {"language_code": "de", "speaker_labels": True},
        {"language_code": "en_us", "speaker_labels": True},
        {"language_detection": True, "language_code": "fr", "speaker_labels": True},
    )
    assert answers == [
        (400, "The following models are not available in this language: speaker_labels"),
        (200, None),
        (200, None),
        (200, None),  # detected, not set: the feature is silently omitted
    ]
    # By default the audio intelligence features are English only.
    assert await refusals(
        BatchBehaviour(), {"language_code": "es", "sentiment_analysis": True}
    ) == [(400, "The following models are not available in this language: sentiment_analysis")]


async def test_unknown_parameters_and_ids_follow_their_switches() -> None:
    strict = await refusals(BatchBehaviour(), {"bogus": 1}, {"punctuate": "yes"})
    assert strict == [(400, "bogus is not a valid parameter"), (400, "punctuate must be a Boolean")]
    assert await refusals(BatchBehaviour(unknown_params="ignore"), {"bogus": 1}) == [(200, None)]
    async with BatchEmulator(behaviour=BatchBehaviour(unknown_id="lookup_error")).serve() as server:
        lookup = await Api(server.url, "k").call("GET", "/v2/transcript/nope")
    assert lookup == (400, {"error": "Transcript lookup error, transcript id not found"})
