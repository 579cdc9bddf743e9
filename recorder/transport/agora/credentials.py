"""The bot's Agora credentials: which token it joins with, and whether it can renew one.

With the App Certificate we build AccessToken2 tokens for the exact channel and
uid (subscriber; publisher when the bot may speak) and renew them
(docs/providers.md, "Agora: tokens"); a prebuilt AGORA_TOKEN is used as
given; an App-ID-only project needs neither. Secrets stay in here and out of
every repr, log line and message.
"""

from __future__ import annotations

from recorder.errors import ConfigError
from recorder.transport.agora.codes import TokenSource, validate_app_id
from recorder.transport.agora.token import RtcRole, build_rtc_token

__all__ = ["AgoraCredentials"]


class AgoraCredentials:
    """Tokens for one channel and uid.

    Args:
        app_id: the project's App ID (checked: 32 hex characters).
        channel: the channel the tokens are for.
        uid: the bot's uid.
        app_certificate: builds and renews tokens (secret).
        token: a prebuilt token to join with (secret).
        is_publisher: tokens carry the publish privileges.
        lifetime_s: lifetime of the tokens built here.

    Raises:
        ConfigError: the App ID or the certificate is malformed.
    """

    def __init__(
        self,
        *,
        app_id: str,
        channel: str,
        uid: int,
        app_certificate: str | None = None,
        token: str | None = None,
        is_publisher: bool = False,
        lifetime_s: int = 3600,
    ) -> None:
        self.app_id = validate_app_id(app_id)
        self._channel = channel
        self._uid = uid
        self._certificate = app_certificate or None
        self._prebuilt = token or None
        self._role = RtcRole.PUBLISHER if is_publisher else RtcRole.SUBSCRIBER
        self._lifetime_s = lifetime_s
        self.source = (
            TokenSource.PREBUILT
            if self._prebuilt
            else TokenSource.CERTIFICATE
            if self._certificate
            else TokenSource.APP_ID_ONLY
        )
        if self._certificate:
            self.fresh_token()  # a malformed certificate is a ConfigError now, not mid-join

    def __repr__(self) -> str:
        return f"AgoraCredentials(source={self.source.value!r}, can_renew={self.can_renew})"

    @property
    def can_renew(self) -> bool:
        """Whether a new token can be made here (the certificate is known)."""
        return self._certificate is not None

    def join_token(self) -> str:
        """The token for the first join: the prebuilt one, a fresh one, or the App ID."""
        if self._prebuilt:
            return self._prebuilt
        if self._certificate:
            return self.fresh_token()
        # App-ID-only project: the SDK's own examples pass the App ID (docs/providers.md,
        # "Agora: tokens").
        return self.app_id

    def fresh_token(self) -> str:
        """Build a new token for the channel and uid (renewal, rejoin).

        Raises:
            ConfigError: there is no certificate, or it is malformed.
        """
        if self._certificate is None:
            raise ConfigError("a new agora token needs AGORA_APP_CERTIFICATE")
        return build_rtc_token(
            self.app_id,
            self._certificate,
            self._channel,
            self._uid,
            role=self._role,
            expire_s=self._lifetime_s,
        )
