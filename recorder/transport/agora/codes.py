"""What Agora's reason and result codes mean for the user, and the checks made before joining.

Every failure the SDK reports (connection-changed reasons, return codes:
docs/providers.md, "Agora: events and codes") becomes one lowercase message
that names the reason, its number and the fix; channel names and uids are
checked first (docs/providers.md, "Agora: service and connections" and
"Agora: tokens"). Nothing here imports the SDK.
"""

from __future__ import annotations

import enum
import re

from recorder.config import MAX_UID
from recorder.errors import ConfigError

__all__ = [
    "CHANNEL_NAME_CHARACTERS",
    "FATAL_REASONS",
    "MAX_CHANNEL_NAME_BYTES",
    "MAX_UID",
    "TRANSIENT_REASONS",
    "TokenSource",
    "connect_result_problem",
    "offline_reason",
    "reason_name",
    "reason_problem",
    "validate_app_id",
    "validate_channel_name",
    "validate_uid",
]

# 89 allowed characters; "less than 64 bytes" is the stricter reading
# (docs/providers.md, "Agora: service and connections").
CHANNEL_NAME_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,"
)
MAX_CHANNEL_NAME_BYTES = 63
# Numeric uids are unsigned 32-bit; 0 asks the SDK to assign one (docs/providers.md,
# "Agora: tokens").
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")

# CONNECTION_CHANGED_REASON_TYPE in agorabase (docs/providers.md, "Agora: events and codes").
_REASON_NAMES = {
    0: "connecting",
    1: "join success",
    2: "interrupted",
    3: "banned by server",
    4: "join failed",
    5: "leave channel",
    6: "invalid app id",
    7: "invalid channel name",
    8: "invalid token",
    9: "token expired",
    10: "rejected by server",
    11: "setting proxy server",
    12: "renew token",
    13: "client ip address changed",
    14: "keep alive timeout",
    15: "rejoin success",
    16: "lost",
    17: "echo test",
    18: "client ip address changed by user",
    19: "same uid login",
    20: "too many broadcasters",
    21: "license verify failed",
    22: "certification verify failure",
    23: "stream channel not available",
    24: "inconsistent appid",
}
# Fatal for the recorder (do not wait for the SDK to reconnect); 9 only when the
# token cannot be renewed. Transient ones the SDK recovers from itself
# (docs/providers.md, "Agora: events and codes").
FATAL_REASONS = frozenset({3, 4, 6, 7, 8, 9, 10, 19, 20, 21, 22, 23, 24})
TRANSIENT_REASONS = frozenset({2, 13, 14, 16})
# USER_OFFLINE_REASON_TYPE, as ParticipantLeft.reason.
_OFFLINE_REASONS = {0: "quit", 1: "dropped", 2: "became audience"}
# ERROR_CODE_TYPE values a connect() result may carry
# (docs/providers.md, "Agora: events and codes").
_CONNECT_RESULTS = {
    -2: "invalid argument",
    -7: "sdk not initialised",
    -8: "the connection is already connecting or connected",
    -17: "join channel rejected",
    -102: "invalid channel name",
}


class TokenSource(enum.Enum):
    """Where the token the bot joins with comes from (changes the advice on failure)."""

    CERTIFICATE = "certificate"
    PREBUILT = "prebuilt"
    APP_ID_ONLY = "app id only"


def reason_name(reason: int) -> str:
    """The reason's name as Agora documents it, or ``unknown (N)``."""
    return _REASON_NAMES.get(reason, f"unknown ({reason})")


def offline_reason(reason: int) -> str:
    """Why a participant left: ``quit``, ``dropped``, ``became audience`` or ``unknown (N)``."""
    return _OFFLINE_REASONS.get(reason, f"unknown ({reason})")


def _token_fix(source: TokenSource, channel: str, uid: int) -> str:
    if source is TokenSource.CERTIFICATE:
        return "check that AGORA_APP_CERTIFICATE belongs to the same Agora project as AGORA_APP_ID"
    if source is TokenSource.PREBUILT:
        return (
            f"build AGORA_TOKEN for channel {channel!r} and uid {uid} (or 0) with the "
            "project's certificate, or set AGORA_APP_CERTIFICATE and let recorder build one"
        )
    return (
        "the project has an App Certificate enabled: set AGORA_APP_CERTIFICATE "
        "(or a prebuilt AGORA_TOKEN)"
    )


def reason_problem(reason: int, *, channel: str, uid: int, token_source: TokenSource) -> str:
    """Describe a connection failure reason with what to do about it.

    Args:
        reason: the CONNECTION_CHANGED_REASON_TYPE value.
        channel: the channel being joined (named in the message).
        uid: the bot's uid.
        token_source: how the token was obtained.

    Returns:
        ``"<what> (reason N <name>); <fix>"``, lowercase, without secrets.
    """
    name = f"reason {reason} {reason_name(reason)}"
    fixes = {
        3: f"Agora banned uid {uid} or this address from channel {channel!r} ({name}); "
        "ask the channel owner to lift the ban, or set another AGORA_BOT_UID",
        4: f"Agora could not complete the join to channel {channel!r} ({name}); "
        "check that this machine can reach Agora (UDP and TCP outbound) and try again",
        6: f"Agora does not know AGORA_APP_ID ({name}); copy the App ID of your project "
        "from the Agora console",
        7: f"Agora rejected the channel name {channel!r} ({name}); use 1-63 ASCII letters, "
        "digits, spaces or !#$%&()+-:;<=.>?@[]^_{}|~,",
        8: f"Agora rejected the token ({name}); {_token_fix(token_source, channel, uid)}",
        9: f"the Agora token expired ({name}); "
        + (
            "pass a fresh AGORA_TOKEN, or set AGORA_APP_CERTIFICATE so recorder renews it"
            if token_source is not TokenSource.CERTIFICATE
            else "check this machine's clock, then join again"
        ),
        10: f"Agora refused the join to channel {channel!r} ({name}); check that uid {uid} "
        "is not already in the channel, or set another AGORA_BOT_UID",
        19: f"another client joined channel {channel!r} with the bot's uid {uid} ({name}); "
        "set an AGORA_BOT_UID nobody else uses",
        20: f"channel {channel!r} has the most hosts Agora allows ({name}); record without "
        "speaking a recap (the bot then joins as audience)",
        21: f"Agora could not verify the project's license ({name}); check the project "
        "in the Agora console",
        22: f"Agora could not verify the project's certificate ({name}); check "
        "AGORA_APP_CERTIFICATE",
        23: f"channel {channel!r} is not available ({name}); try another channel",
        24: f"the token was made for another App ID ({name}); make sure AGORA_APP_ID and "
        "AGORA_APP_CERTIFICATE (or AGORA_TOKEN) come from the same project",
    }
    return fixes.get(
        reason,
        f"the Agora connection to channel {channel!r} failed ({name}); try again, and "
        "report it with the Agora log if it keeps happening",
    )


def connect_result_problem(result: int, *, channel: str) -> str:
    """Describe a non-zero ``RTCConnection.connect`` result.

    See docs/providers.md, "Agora: events and codes".
    """
    meaning = _CONNECT_RESULTS.get(result, "unknown")
    if result in (-2, -102):
        fix = (
            f"check the channel name {channel!r} (1-63 ASCII letters, digits, spaces or "
            "!#$%&()+-:;<=.>?@[]^_{}|~,) and AGORA_BOT_UID"
        )
    else:
        fix = "try again, and report it with the Agora log if it keeps happening"
    return f"the Agora SDK refused to join channel {channel!r} (result {result} {meaning}); {fix}"


def validate_channel_name(channel: str) -> str:
    """Check a channel name before the SDK sees it.

    The rules: docs/providers.md, "Agora: service and connections".

    Raises:
        ConfigError: the name is empty, too long, or has a character Agora refuses.
    """
    if not channel:
        raise ConfigError("the channel name is empty; use --channel NAME or set AGORA_CHANNEL")
    size = len(channel.encode("utf-8"))
    if size > MAX_CHANNEL_NAME_BYTES:
        raise ConfigError(
            f"channel name {channel!r} is {size} bytes; Agora allows at most "
            f"{MAX_CHANNEL_NAME_BYTES}"
        )
    bad = sorted(set(channel) - CHANNEL_NAME_CHARACTERS)
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        raise ConfigError(
            f"channel name {channel!r} has characters Agora does not allow ({shown}); "
            "use ASCII letters, digits, spaces or !#$%&()+-:;<=.>?@[]^_{}|~,"
        )
    return channel


def validate_uid(uid: int) -> int:
    """Check the bot's uid: 1 to 2**32-1; 0 would let Agora pick one.

    The range: docs/providers.md, "Agora: tokens".

    Raises:
        ConfigError: the uid is out of range.
    """
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid <= MAX_UID:
        raise ConfigError(f"AGORA_BOT_UID must be between 1 and {MAX_UID}, got {uid!r}")
    return uid


def validate_app_id(app_id: str | None) -> str:
    """Check AGORA_APP_ID is there and looks like an App ID (32 hexadecimal characters).

    Raises:
        ConfigError: it is missing or malformed (the value is not shown).
    """
    if not app_id:
        raise ConfigError(
            "AGORA_APP_ID is not set; copy your project's App ID from the Agora console "
            "into the environment or a .env file"
        )
    if not _HEX32.fullmatch(app_id):
        raise ConfigError(
            f"AGORA_APP_ID must be 32 hexadecimal characters (got {len(app_id)} characters); "
            "copy it again from the Agora console"
        )
    return app_id
