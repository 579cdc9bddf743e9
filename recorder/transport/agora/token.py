"""Agora AccessToken2 ("007") RTC tokens, built from the published algorithm.

Agora recommends AccessToken2 (docs/providers.md, "Agora: tokens"); the PyPI
``agora-token-builder`` only makes the legacy "006" tokens, and the packaged
"007" builder's provenance is unconfirmed, so this module implements
AccessToken2 itself and its tests check it against the official test vectors
(https://github.com/AgoraIO/Tools/tree/master/DynamicKey/AgoraDynamicKey).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from recorder.errors import ConfigError

__all__ = [
    "MAX_TOKEN_LIFETIME_S",
    "SERVICE_RTC",
    "TOKEN_VERSION",
    "AccessToken2",
    "RtcPrivilege",
    "RtcRole",
    "TokenService",
    "build_rtc_token",
    "pack_access_token2",
    "parse_access_token2",
    "verify_access_token2",
]

TOKEN_VERSION = "007"
SERVICE_RTC = 1
# Tools README: "Each privilege is valid for a maximum of 24 hours".
MAX_TOKEN_LIFETIME_S = 24 * 3600
_UINT16_MAX = 0xFFFF
_UINT32_MAX = 0xFFFFFFFF
# AccessToken2.__init__ draws the salt from randint(1, 99999999).
_SALT_MAX = 99_999_999


class RtcRole(enum.IntEnum):
    """Token roles of RtcTokenBuilder2 (tools ``Role_Publisher`` / ``Role_Subscriber``)."""

    PUBLISHER = 1
    SUBSCRIBER = 2


class RtcPrivilege(enum.IntEnum):
    """Privilege keys of the RTC service (tools ``ServiceRtc.kPrivilege*``)."""

    JOIN_CHANNEL = 1
    PUBLISH_AUDIO_STREAM = 2
    PUBLISH_VIDEO_STREAM = 3
    PUBLISH_DATA_STREAM = 4


@dataclass(frozen=True, slots=True)
class TokenService:
    """One service section of an AccessToken2.

    Attributes:
        service_type: the service number (1 = RTC).
        privileges: privilege key -> expiry in seconds after the issue time.
        payload: the service's packed fields after its privileges (for RTC:
            the packed channel name and uid).
    """

    service_type: int
    privileges: Mapping[int, int]
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class AccessToken2:
    """The decoded content of a "007" token (the signature is not re-checked).

    Attributes:
        app_id: the App ID the token was built for.
        issue_ts: issue time, Unix seconds.
        expire_s: lifetime of the whole token, seconds after ``issue_ts``.
        salt: the random salt mixed into the signature.
        services: the service sections in token order.
        signature: the HMAC-SHA256 signature (kept out of the repr).
    """

    app_id: str
    issue_ts: int
    expire_s: int
    salt: int
    services: tuple[TokenService, ...]
    signature: bytes = field(repr=False)

    def rtc_channel_and_uid(self) -> tuple[str, str]:
        """Return the channel name and uid of the RTC service ("" uid = any uid).

        Raises:
            ValueError: the token has no RTC service.
        """
        for service in self.services:
            if service.service_type == SERVICE_RTC:
                channel, rest = _unpack_string(service.payload)
                uid, _ = _unpack_string(rest)
                return channel.decode("utf-8"), uid.decode("utf-8")
        raise ValueError("token has no rtc service")

    def rtc_privileges(self) -> dict[int, int]:
        """Return the RTC privileges (key -> expiry seconds), empty if none."""
        for service in self.services:
            if service.service_type == SERVICE_RTC:
                return dict(service.privileges)
        return {}


def _pack_uint16(value: int) -> bytes:
    return struct.pack("<H", value)


def _pack_uint32(value: int) -> bytes:
    return struct.pack("<I", value)


def _pack_string(value: bytes) -> bytes:
    if len(value) > _UINT16_MAX:
        raise ValueError("string too long for an access token field")
    return _pack_uint16(len(value)) + value


def _pack_privileges(privileges: Mapping[int, int]) -> bytes:
    # AccessToken2.Service.__pack_privileges sorts by privilege key.
    items = sorted(privileges.items())
    return _pack_uint16(len(items)) + b"".join(
        _pack_uint16(key) + _pack_uint32(value) for key, value in items
    )


def _unpack_uint16(buffer: bytes) -> tuple[int, bytes]:
    if len(buffer) < 2:
        raise ValueError("access token truncated")
    return struct.unpack("<H", buffer[:2])[0], buffer[2:]


def _unpack_uint32(buffer: bytes) -> tuple[int, bytes]:
    if len(buffer) < 4:
        raise ValueError("access token truncated")
    return struct.unpack("<I", buffer[:4])[0], buffer[4:]


def _unpack_string(buffer: bytes) -> tuple[bytes, bytes]:
    length, buffer = _unpack_uint16(buffer)
    if len(buffer) < length:
        raise ValueError("access token truncated")
    return buffer[:length], buffer[length:]


def _is_hex32(value: str) -> bool:
    if len(value) != 32:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def pack_access_token2(
    app_id: str,
    app_certificate: str,
    services: tuple[TokenService, ...],
    *,
    issue_ts: int,
    expire_s: int,
    salt: int,
) -> str:
    """Sign and encode an AccessToken2 from its parts (tools ``AccessToken.build``).

    The signing key is HMAC-SHA256(key=uint32 issue_ts, msg=certificate), then
    HMAC-SHA256(key=uint32 salt, msg=that); the token is "007" + base64(zlib(
    packed signature + packed content)), all integers little-endian.

    Args:
        app_id: 32 hexadecimal characters.
        app_certificate: 32 hexadecimal characters (secret; never echoed).
        services: the service sections, packed in this order.
        issue_ts: issue time, Unix seconds.
        expire_s: token lifetime in seconds after ``issue_ts``.
        salt: a random 32-bit value.

    Returns:
        The token string.

    Raises:
        ConfigError: the App ID or certificate is not 32 hexadecimal characters.
        ValueError: a number does not fit its field, or there is no service.
    """
    if not _is_hex32(app_id):
        raise ConfigError(
            "AGORA_APP_ID must be 32 hexadecimal characters; copy it from the console"
        )
    if not _is_hex32(app_certificate):
        raise ConfigError(
            "AGORA_APP_CERTIFICATE must be 32 hexadecimal characters; copy it from the console"
        )
    if not services:
        raise ValueError("an access token needs at least one service")
    for number in (issue_ts, expire_s, salt):
        if not 0 <= number <= _UINT32_MAX:
            raise ValueError("access token numbers must fit in 32 unsigned bits")
    signing = hmac.new(_pack_uint32(issue_ts), app_certificate.encode("utf-8"), hashlib.sha256)
    signing = hmac.new(_pack_uint32(salt), signing.digest(), hashlib.sha256)
    content = (
        _pack_string(app_id.encode("utf-8"))
        + _pack_uint32(issue_ts)
        + _pack_uint32(expire_s)
        + _pack_uint32(salt)
        + _pack_uint16(len(services))
    )
    for service in services:
        content += (
            _pack_uint16(service.service_type)
            + _pack_privileges(service.privileges)
            + service.payload
        )
    signature = hmac.new(signing.digest(), content, hashlib.sha256).digest()
    packed = zlib.compress(_pack_string(signature) + content)
    return TOKEN_VERSION + base64.b64encode(packed).decode("ascii")


def build_rtc_token(
    app_id: str,
    app_certificate: str,
    channel: str,
    uid: int | str,
    *,
    role: RtcRole = RtcRole.SUBSCRIBER,
    expire_s: int = 3600,
    privilege_expire_s: int | None = None,
    issue_ts: int | None = None,
    salt: int | None = None,
) -> str:
    """Build an RTC token for one channel and uid (tools ``build_token_with_uid``).

    A subscriber token carries only the join privilege; a publisher token adds
    publish-audio, publish-video and publish-data-stream, as RtcTokenBuilder2
    does. Publish privileges only matter when co-host authentication is on.

    Args:
        app_id: the App ID, 32 hexadecimal characters.
        app_certificate: the App Certificate, 32 hexadecimal characters (secret).
        channel: the exact channel name the token is for.
        uid: the numeric uid (0 = any uid) or a user-account string.
        role: subscriber (join only) or publisher (join and publish).
        expire_s: token lifetime in seconds from the issue time (1 to 86400).
        privilege_expire_s: privilege lifetime in seconds; defaults to
            ``expire_s`` (always pass an explicit value: docs/providers.md,
            "Agora: tokens").
        issue_ts: issue time in Unix seconds; defaults to now (tests pin it).
        salt: the signature salt; defaults to a random 1..99999999.

    Returns:
        The "007" token string.

    Raises:
        ConfigError: the App ID or certificate is malformed, or a lifetime is
            outside 1..86400 seconds.
    """
    for name, value in (("expire_s", expire_s), ("privilege_expire_s", privilege_expire_s)):
        if value is not None and not 0 < value <= MAX_TOKEN_LIFETIME_S:
            raise ConfigError(
                f"agora token {name} must be between 1 and {MAX_TOKEN_LIFETIME_S} seconds, "
                f"got {value}"
            )
    privilege_s = expire_s if privilege_expire_s is None else privilege_expire_s
    privileges = {int(RtcPrivilege.JOIN_CHANNEL): privilege_s}
    if role == RtcRole.PUBLISHER:
        for privilege in (
            RtcPrivilege.PUBLISH_AUDIO_STREAM,
            RtcPrivilege.PUBLISH_VIDEO_STREAM,
            RtcPrivilege.PUBLISH_DATA_STREAM,
        ):
            privileges[int(privilege)] = privilege_s
    # ServiceRtc: uid 0 is packed as an empty string, meaning "any uid".
    uid_bytes = b"" if uid == 0 else str(uid).encode("utf-8")
    payload = _pack_string(channel.encode("utf-8")) + _pack_string(uid_bytes)
    return pack_access_token2(
        app_id,
        app_certificate,
        (TokenService(SERVICE_RTC, privileges, payload),),
        issue_ts=int(time.time()) if issue_ts is None else issue_ts,
        expire_s=expire_s,
        salt=secrets.randbelow(_SALT_MAX) + 1 if salt is None else salt,
    )


# Payload layout after the privileges, per service type (tools AccessToken2.py):
# 1 RTC and 3 streaming: channel + uid; 2 RTM, 5 chat: one string; 4: nothing.
_PAYLOAD_STRINGS = {1: 2, 2: 1, 3: 2, 4: 0, 5: 1}


def parse_access_token2(token: str) -> AccessToken2:
    """Decode a "007" token (tools ``AccessToken.from_string``), without verifying it.

    Args:
        token: the token string.

    Returns:
        The decoded token.

    Raises:
        ValueError: not a well-formed "007" token (the message never echoes it).
    """
    if not token.startswith(TOKEN_VERSION):
        raise ValueError("not an AccessToken2 (007) token")
    try:
        inflater = zlib.decompressobj()
        buffer = inflater.decompress(base64.b64decode(token[len(TOKEN_VERSION) :], validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError("access token is not valid base64/zlib data") from exc
    if not inflater.eof or inflater.unused_data:
        raise ValueError("access token is truncated or has trailing data")
    signature, buffer = _unpack_string(buffer)
    app_id, buffer = _unpack_string(buffer)
    issue_ts, buffer = _unpack_uint32(buffer)
    expire_s, buffer = _unpack_uint32(buffer)
    salt, buffer = _unpack_uint32(buffer)
    count, buffer = _unpack_uint16(buffer)
    services = []
    for _ in range(count):
        service_type, buffer = _unpack_uint16(buffer)
        n_privileges, buffer = _unpack_uint16(buffer)
        privileges = {}
        for _ in range(n_privileges):
            key, buffer = _unpack_uint16(buffer)
            privileges[key], buffer = _unpack_uint32(buffer)
        if service_type not in _PAYLOAD_STRINGS:
            raise ValueError(f"access token has an unknown service type {service_type}")
        start = buffer
        for _ in range(_PAYLOAD_STRINGS[service_type]):
            _, buffer = _unpack_string(buffer)
        payload = start[: len(start) - len(buffer)]
        services.append(TokenService(service_type, privileges, payload))
    if buffer:
        raise ValueError("access token has trailing bytes")
    return AccessToken2(
        app_id=app_id.decode("utf-8", errors="replace"),
        issue_ts=issue_ts,
        expire_s=expire_s,
        salt=salt,
        services=tuple(services),
        signature=signature,
    )


def verify_access_token2(token: str, app_certificate: str) -> bool:
    """Tell whether ``token`` was signed with ``app_certificate``.

    Args:
        token: a "007" token.
        app_certificate: the App Certificate to check against (secret).

    Returns:
        True if the token is well formed and its signature matches.
    """
    try:
        parsed = parse_access_token2(token)
        again = pack_access_token2(
            parsed.app_id,
            app_certificate,
            parsed.services,
            issue_ts=parsed.issue_ts,
            expire_s=parsed.expire_s,
            salt=parsed.salt,
        )
    except (ValueError, ConfigError):
        return False
    return hmac.compare_digest(parse_access_token2(again).signature, parsed.signature)
