"""The async emulator's timings, limits and switches (:class:`BatchBehaviour`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from recorder.emulator.batch.validate import (
    DEFAULT_FEATURE_LANGUAGES,
    DeprecatedModels,
    SpeechModelsPolicy,
)

__all__ = ["FAULTS", "BatchBehaviour"]

#: Injectable faults (``fail_next``, ``BatchBehaviour.fault``, ``recorder emulate
#: --async-fault``): an HTTP status, or 0 to drop the connection without an answer.
FAULTS = (0, 429, 500, 503, 504)


@dataclass(frozen=True, slots=True)
class BatchBehaviour:
    """What the emulated service does. Switches default to the spec's choice.

    Attributes:
        processing_s: how long a job takes once it runs.
        concurrency: jobs processed at once per account (5 on a free account).
        requests_per_window: an account's request budget per ``window_s``.
        window_s: the budget's window (the real one: 20,000 per five minutes).
        webhook_retry_s: pause between webhook attempts (the real one: 10 s).
        webhook_attempts: webhook attempts at most.
        max_upload_bytes: the largest upload accepted.
        fault: a fault for every request (one of :data:`FAULTS`), or None.
        speech_models_policy: which 2026 API ``speech_models`` follows (checklist item 7).
        deprecated_models: a deprecated model id is ``route``d to its replacement or
            ``reject``ed with 400 (a CONFLICT in the spec).
        today: the date the service believes it is (the default model changes with it);
            None: the real date.
        unknown_params: ``reject`` (400, the spec's additionalProperties false) or
            ``ignore`` unknown create parameters (UNCONFIRMED).
        foreign_upload: another project's upload URL is ``refuse``d at create (403) or
            fails the job (``fail_job``); UNCONFIRMED, the spec's default is synchronous.
        unknown_id: an unknown transcript id is ``not_found`` (404, the spec) or
            ``lookup_error`` (400, a cookbook).
        feature_languages: languages each feature works in (a set ``language_code``
            refuses the others with 400).
        redacted_audio_delay_s: how long after completion redacted audio is ready.
        redacted_audio_ttl_s: how long redacted audio stays available (24 h).
    """

    processing_s: float = 0.0
    concurrency: int = 5
    requests_per_window: int = 20_000
    window_s: float = 300.0
    webhook_retry_s: float = 10.0
    webhook_attempts: int = 10
    max_upload_bytes: int = 2_200_000_000
    fault: int | None = None
    speech_models_policy: SpeechModelsPolicy = "late-2026"
    deprecated_models: DeprecatedModels = "route"
    today: date | None = None
    unknown_params: Literal["reject", "ignore"] = "reject"
    foreign_upload: Literal["refuse", "fail_job"] = "refuse"
    unknown_id: Literal["not_found", "lookup_error"] = "not_found"
    feature_languages: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: dict(DEFAULT_FEATURE_LANGUAGES)
    )
    redacted_audio_delay_s: float = 0.0
    redacted_audio_ttl_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {FAULTS}")
