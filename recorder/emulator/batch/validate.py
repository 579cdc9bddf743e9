"""Checking a create request (``POST /v2/transcript``) the way the async API does.

The rules and error strings are those of the spec's emulator checklist
(/work/shared/specs/assemblyai-async-transcription.md, section 11, items 6-10, and section 6
for the speech models). Where the spec quotes the service's text it is used verbatim;
where it marks the text UNCONFIRMED, the message here is plain and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

__all__ = [
    "DEFAULT_FEATURE_LANGUAGES",
    "U3_MODELS",
    "CreateRequest",
    "DeprecatedModels",
    "SpeechModelsPolicy",
    "check_create",
    "models_by_default",
    "language_base",
    "model_used",
]

#: Which 2026 API the emulator is (spec section 6.1; checklist item 7):
#: ``march-2026``: ``speech_models`` required, ``universal-3-pro`` and ``universal-2`` only;
#: ``mid-2026``: optional, default ``["universal-3-pro", "universal-2"]``, and
#: ``universal-3-5-pro`` accepted;
#: ``late-2026``: ``assemblyai-stt-3-7``, ``universal-3-5-pro``, ``universal-2``; the default
#: model depends on when the account was created.
SpeechModelsPolicy = Literal["march-2026", "mid-2026", "late-2026"]
#: A deprecated model id asked for by name (a CONFLICT in the spec, section 6.1): ``route``
#: runs its replacement (the docs), ``reject`` answers 400 (a third-party quote of July 2026).
DeprecatedModels = Literal["route", "reject"]

_ACCEPTED: Mapping[str, tuple[str, ...]] = {
    "march-2026": ("universal-3-pro", "universal-2"),
    "mid-2026": ("universal-3-5-pro", "universal-3-pro", "universal-2"),
    "late-2026": ("assemblyai-stt-3-7", "universal-3-5-pro", "universal-2"),
}
# Deprecated ids still named by clients, and what replaces them.
_DEPRECATED: Mapping[str, Mapping[str, str]] = {
    "march-2026": {},
    "mid-2026": {"universal-3-pro": "universal-3-5-pro"},
    "late-2026": {"universal-3-pro": "universal-3-5-pro"},
}
_SUGGESTED = {
    "march-2026": '["universal-3-pro", "universal-2"]',
    "mid-2026": '["universal-3-5-pro", "universal-2"]',
    "late-2026": '["assemblyai-stt-3-7", "universal-2"]',
}
# New accounts default to stt-3.7 from this day; existing ones switch on the next.
_STT_3_7_NEW_ACCOUNTS = date(2026, 11, 17)
_STT_3_7_EVERYONE = date(2026, 12, 8)

#: The prompting-capable models (Universal-3 Pro and its successors).
U3_MODELS = frozenset({"universal-3-pro", "universal-3-5-pro", "assemblyai-stt-3-7"})
# Universal-3 Pro's languages (spec 6.3); its successors' lists are UNCONFIRMED, so they
# are given the same. Universal-2 has 99 languages: every code the emulator sees.
_U3_LANGUAGES = frozenset({"en", "es", "pt", "fr", "de", "it"})
_KEYTERMS_MAX = {True: 1000, False: 200}  # with a U3-class model, and without
_KEYTERM_MAX_WORDS = 6
_U3_ONLY = ("prompt", "temperature", "remove_audio_tags")

_ENGLISH = frozenset({"en"})
#: Which languages a feature works in, by feature; absent features work in every
#: language. UNCONFIRMED (the supported-languages table was not retrieved): the audio
#: intelligence features are given English only. A switch: ``BatchBehaviour.feature_languages``.
DEFAULT_FEATURE_LANGUAGES: Mapping[str, frozenset[str]] = {
    name: _ENGLISH
    for name in (
        "auto_highlights",
        "content_safety",
        "iab_categories",
        "sentiment_analysis",
        "entity_detection",
        "summarization",
        "auto_chapters",
    )
}

# Create parameters the emulator knows, and their JSON types (None is accepted for any
# optional one: the spec types most of them "| null"). Others are refused when
# ``BatchBehaviour.unknown_params`` is "reject": the spec sets additionalProperties false.
_NUMBER = (int, float)
_PARAMS: Mapping[str, type | tuple[type, ...]] = {
    "audio_url": str,
    "speech_models": list,
    "speech_model": str,
    "language_code": str,
    "language_codes": list,
    "language_detection": bool,
    "language_confidence_threshold": _NUMBER,
    "language_detection_options": dict,
    "punctuate": bool,
    "format_text": bool,
    "disfluencies": bool,
    "filter_profanity": bool,
    "multichannel": bool,
    "speaker_labels": bool,
    "speakers_expected": int,
    "speaker_options": dict,
    "keyterms_prompt": list,
    "prompt": str,
    "temperature": _NUMBER,
    "remove_audio_tags": str,
    "audio_start_from": int,
    "audio_end_at": int,
    "speech_threshold": _NUMBER,
    "custom_spelling": list,
    "webhook_url": str,
    "webhook_auth_header_name": str,
    "webhook_auth_header_value": str,
    "redact_pii": bool,
    "redact_pii_audio": bool,
    "redact_pii_audio_quality": str,
    "redact_pii_audio_options": dict,
    "redact_pii_policies": list,
    "redact_pii_sub": str,
    **{name: bool for name in DEFAULT_FEATURE_LANGUAGES},
    "content_safety_confidence": int,
}
_TYPE_NAMES = {
    bool: "a Boolean",
    str: "a string",
    list: "a list",
    int: "an integer",
    dict: "an object",
}


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A create request that passed: its parameters and the models it runs with."""

    params: dict[str, Any]
    models: tuple[str, ...]


def language_base(code: str | None) -> str:
    """``en_us`` → ``en``: the language a regional code belongs to."""
    return (code or "en").split("_", 1)[0].lower()


def model_used(models: tuple[str, ...], language: str) -> str:
    """The first model in priority order that speaks ``language``, else the last (spec 6.2)."""
    for model in models:
        if model not in U3_MODELS or language_base(language) in _U3_LANGUAGES:
            return model
    return models[-1]


def models_by_default(
    policy: SpeechModelsPolicy, account_created: date, today: date
) -> tuple[str, ...]:
    """What runs when ``speech_models`` is omitted (spec 6.1)."""
    if policy == "late-2026":
        if account_created >= _STT_3_7_NEW_ACCOUNTS or today >= _STT_3_7_EVERYONE:
            return ("assemblyai-stt-3-7",)
        return ("universal-3-5-pro",)
    return ("universal-3-pro", "universal-2")


def _type_error(params: Mapping[str, Any], reject_unknown: bool) -> str | None:
    for name, value in params.items():
        kind = _PARAMS.get(name)
        if kind is None:
            if reject_unknown:
                return f"{name} is not a valid parameter"
            continue
        if value is None and name != "audio_url":
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            shown = "a number" if kind == _NUMBER else _TYPE_NAMES[kinds[0]]
            return f"{name} must be {shown}"
    return None


def _models_error(
    params: Mapping[str, Any],
    policy: SpeechModelsPolicy,
    deprecated: DeprecatedModels,
    default: tuple[str, ...],
) -> tuple[str | None, tuple[str, ...]]:
    """An error, or the models the job runs with (deprecated ids routed)."""
    accepted = _ACCEPTED[policy]
    retired = _DEPRECATED[policy]
    listed = params.get("speech_models")
    invalid = '"speech_models" must be a non-empty list containing one or more of: ' + ", ".join(
        f'"{model}"' for model in accepted
    )
    if listed is None:
        return (invalid, ()) if policy == "march-2026" else (None, default)
    if not listed or not all(isinstance(m, str) for m in listed):
        return invalid, ()
    old = [m for m in listed if m in retired]
    if old and deprecated == "reject":
        names = ", ".join(f'"{m}"' for m in old)
        return (
            f"The {names} speech model(s) have been deprecated. "
            f"Use speech_models: {_SUGGESTED[policy]} instead.",
            (),
        )
    if not all(m in accepted or m in retired for m in listed):
        return invalid, ()
    return None, tuple(dict.fromkeys(retired.get(m, m) for m in listed))


def _custom_spelling_error(value: Any) -> str | None:
    if value is None:
        return None
    for rule in value:
        sources = rule.get("from") if isinstance(rule, dict) else None
        target = rule.get("to") if isinstance(rule, dict) else None
        if (
            not isinstance(sources, list)
            or not sources
            or not all(isinstance(s, str) and s for s in sources)
            or not isinstance(target, str)
        ):
            return 'custom_spelling must be a list of {"from": [strings], "to": string}'
    return None


def check_create(
    params: Mapping[str, Any],
    *,
    policy: SpeechModelsPolicy,
    deprecated: DeprecatedModels,
    default_models: tuple[str, ...],
    feature_languages: Mapping[str, frozenset[str]],
    reject_unknown: bool,
) -> CreateRequest | str:
    """The request to run, or the 400 error text that refuses it."""
    if params.get("speech_model") is not None:
        return (
            'speech_model is deprecated. Use "speech_models" instead. See documentation: '
            "https://www.assemblyai.com/docs/pre-recorded-audio/select-the-speech-model"
        )
    problem = _type_error(params, reject_unknown)
    if problem:
        return problem
    if "audio_url" not in params:
        return "audio_url is required"
    problem, models = _models_error(params, policy, deprecated, default_models)
    if problem:
        return problem
    has_u3 = any(m in U3_MODELS for m in models)
    if params.get("prompt") is not None and params.get("keyterms_prompt") is not None:
        return "prompt and keyterms_prompt cannot be used in the same request"
    if not has_u3:
        for name in _U3_ONLY:
            if params.get(name) is not None:
                return f"{name} is only available with a Universal-3 Pro model in speech_models"
    terms = params.get("keyterms_prompt") or []
    if len(terms) > _KEYTERMS_MAX[has_u3]:
        return f"keyterms_prompt may hold at most {_KEYTERMS_MAX[has_u3]} terms with {models[0]}"
    for term in terms:
        if not isinstance(term, str):
            return "keyterms_prompt must be a list of strings"
        if len(term.split()) > _KEYTERM_MAX_WORDS:
            return f"keyterms_prompt phrases may have at most {_KEYTERM_MAX_WORDS} words: {term!r}"
    problem = _custom_spelling_error(params.get("custom_spelling"))
    if problem:
        return problem
    if params.get("language_code") is not None and not params.get("language_detection"):
        # A language set by hand refuses what it cannot do (spec 4.4); a detected one
        # silently drops it.
        language = language_base(params["language_code"])
        missing = [
            name
            for name, languages in feature_languages.items()
            if params.get(name) and language not in languages
        ]
        if missing:
            return "The following models are not available in this language: " + ", ".join(missing)
    return CreateRequest(dict(params), models)
