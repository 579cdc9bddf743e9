"""One emulated transcript job and the Transcript object it answers with (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recorder.emulator.batch.accounts import DEFAULT_SCOPE, KeyScope
from recorder.emulator.batch.results import WordList, utterances

__all__ = ["Job"]

_DELETED_URL = "http://deleted_by_user"
# Request options echoed on the Transcript object as they were sent (null when absent).
_ECHOED = (
    "language_codes",
    "language_detection",
    "language_detection_options",
    "disfluencies",
    "filter_profanity",
    "multichannel",
    "speaker_labels",
    "speakers_expected",
    "speaker_options",
    "prompt",
    "temperature",
    "remove_audio_tags",
    "audio_start_from",
    "audio_end_at",
    "speech_threshold",
    "custom_spelling",
    "redact_pii_audio",
    "redact_pii_audio_quality",
    "redact_pii_audio_options",
    "redact_pii_policies",
    "redact_pii_sub",
    "content_safety",
    "iab_categories",
    "sentiment_analysis",
    "entity_detection",
    "auto_chapters",
)


@dataclass(slots=True)
class Job:
    """A transcript: its request, where it belongs, and how far it got.

    Attributes:
        models: the speech models it runs with, in priority order (deprecated ids routed).
        model_used: the model that ran (``speech_model_used``), once it has.
        completed_at: ``time.monotonic()`` when it finished (redacted audio's clock).
    """

    id: str
    params: dict[str, Any]
    created: str
    models: tuple[str, ...] = ("universal-3-pro", "universal-2")
    scope: KeyScope = DEFAULT_SCOPE
    status: str = "queued"
    throttled: bool = False
    words: WordList | None = None
    duration_s: int | None = None
    error: str | None = None
    completed: str | None = None
    completed_at: float | None = None
    model_used: str | None = None
    webhook_status_code: int | None = None
    is_deleted: bool = False

    @property
    def is_done(self) -> bool:
        """Completed with results (and not deleted since)."""
        return self.status == "completed" and not self.is_deleted and self.words is not None

    def body(self) -> dict[str, Any]:
        """The Transcript object as it is now."""
        params = self.params
        done = self.is_done
        words = self.words if done else None
        diarized = bool(params.get("speaker_labels") or params.get("multichannel"))
        text = None
        if self.is_deleted:
            text = "Deleted by user."
        elif words is not None:
            text = " ".join(w["text"] for w in words)
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "audio_url": _DELETED_URL if self.is_deleted else params["audio_url"],
            "text": text,
            "words": words,
            "utterances": utterances(words) if words is not None and diarized else None,
            "confidence": (0.99 if words else None) if done else None,
            "audio_duration": self.duration_s,
            "speech_models": params.get("speech_models"),
            "speech_model_used": self.model_used if done else None,
            "speech_model": None,
            "language_code": params.get("language_code") or "en_us",
            "language_confidence": None,
            "language_confidence_threshold": params.get("language_confidence_threshold"),
            "language_model": "assemblyai_default",
            "acoustic_model": "assemblyai_default",
            "punctuate": params.get("punctuate", True),
            "format_text": params.get("format_text", True),
            "keyterms_prompt": params.get("keyterms_prompt"),
            "webhook_url": _DELETED_URL if self.is_deleted else params.get("webhook_url"),
            "webhook_auth": "webhook_auth_header_name" in params,
            "webhook_auth_header_name": params.get("webhook_auth_header_name"),
            "webhook_status_code": self.webhook_status_code,
            "throttled": self.throttled,
            "auto_highlights": bool(params.get("auto_highlights")),
            "redact_pii": bool(params.get("redact_pii")),
            "summarization": bool(params.get("summarization")),
        }
        body.update({name: params.get(name) for name in _ECHOED})
        if self.status == "error":
            body["error"] = self.error
        return body
