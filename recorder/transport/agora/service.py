"""The process's one AgoraService, and making and preparing each meeting's connection.

One service per process, initialised once, released at exit after every
connection; the connection settings of a silent recorder (auto-subscribe
audio, audience unless publishing, 16 kHz mono PCM), and the observers
registered once, before ``connect``. See docs/providers.md,
"Agora: service and connections".
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from recorder.errors import JoinError
from recorder.transport.agora.observers import Observers
from recorder.transport.agora.preflight import AgoraSdk
from recorder.transport.agora.tap import TapRegistration

__all__ = [
    "SdkCall",
    "connection_configs",
    "create_connection",
    "prepare_connection",
    "release_agora_service",
    "shared_service",
]

# Runs one blocking SDK call off the loop, bounded (the transport's ``_call``).
SdkCall = Callable[..., Awaitable[Any]]

log = logging.getLogger(__name__)


class _ServiceSlot:
    """The process's one AgoraService (one per process, initialised once)."""

    lock = threading.Lock()
    module: Any = None
    service: Any = None
    app_id = ""
    at_exit = False


def _scenario(sdk: AgoraSdk) -> Any:
    # A non-AI scenario keeps the AI-QoS observer (and its surprise re-publish)
    # away (docs/providers.md, "Agora: audio frames"); GAME_STREAMING is the
    # official examples' fallback.
    return sdk.base.AudioScenarioType.AUDIO_SCENARIO_GAME_STREAMING


def shared_service(sdk: AgoraSdk, app_id: str, log_dir: Path) -> Any:
    """Return the initialised service, creating it on first use (call it in a worker thread).

    A new SDK module object (a test's fresh fake) gets a new service.

    Raises:
        JoinError: the SDK did not initialise, or this process already uses another App ID.
    """
    with _ServiceSlot.lock:
        if _ServiceSlot.service is not None and _ServiceSlot.module is sdk.service:
            if _ServiceSlot.app_id != app_id:
                raise JoinError(
                    "this process already joined Agora with another AGORA_APP_ID; "
                    "run one recorder per Agora project"
                )
            return _ServiceSlot.service
        log_dir.mkdir(parents=True, exist_ok=True)
        service = sdk.service.AgoraService()
        service.initialize(
            sdk.base.AgoraServiceConfig(
                appid=app_id,
                enable_audio_device=0,
                enable_video=0,
                use_string_uid=0,
                audio_scenario=_scenario(sdk),
                log_path=str(log_dir / "agorasdk.log"),
                data_dir=str(log_dir),
                config_dir=str(log_dir),
            )
        )
        # initialize()'s return value is not the result; `inited` is.
        if not getattr(service, "inited", False):
            raise JoinError(
                "the Agora SDK did not start with this AGORA_APP_ID; check the App ID "
                f"in the Agora console and the SDK log in {log_dir}"
            )
        _ServiceSlot.module, _ServiceSlot.service = sdk.service, service
        _ServiceSlot.app_id = app_id
        if not _ServiceSlot.at_exit:
            atexit.register(release_agora_service)
            _ServiceSlot.at_exit = True
        return service


def release_agora_service() -> None:
    """Release the process's AgoraService: at exit, after every connection."""
    with _ServiceSlot.lock:
        service, _ServiceSlot.service, _ServiceSlot.module = _ServiceSlot.service, None, None
    if service is not None:
        try:
            service.release()
        except Exception:  # foreign code at exit: report, never raise
            log.exception("! agora service release failed")


def connection_configs(sdk: AgoraSdk, *, publish: bool) -> tuple[Any, Any]:
    """The ``(RTCConnConfig, RtcConnectionPublishConfig)`` of one meeting.

    Args:
        sdk: the loaded SDK.
        publish: join as a host with a PCM track (the recap); else a silent audience.
    """
    base = sdk.base
    role = (
        base.ClientRoleType.CLIENT_ROLE_BROADCASTER
        if publish
        else base.ClientRoleType.CLIENT_ROLE_AUDIENCE
    )
    conn_config = base.RTCConnConfig(
        auto_subscribe_audio=1,  # the wrapper's default is 0
        auto_subscribe_video=0,
        enable_audio_recording_or_playout=0,
        client_role_type=role,
        channel_profile=base.ChannelProfileType.CHANNEL_PROFILE_LIVE_BROADCASTING,
        audio_subs_options=base.AudioSubscriptionOptions(
            packet_only=0,
            pcm_data_only=1,
            bytes_per_sample=2,
            number_of_channels=1,
            sample_rate_hz=16000,
        ),
    )
    # Whether the connection can ever publish is fixed here (default True!).
    publish_config = base.RtcConnectionPublishConfig(
        is_publish_audio=publish,
        is_publish_video=False,
        audio_publish_type=base.AudioPublishType.AUDIO_PUBLISH_TYPE_PCM,
        audio_scenario=_scenario(sdk),
    )
    return conn_config, publish_config


async def create_connection(
    call: SdkCall, sdk: AgoraSdk, *, app_id: str, log_dir: Path, publish: bool
) -> Any:
    """Make the meeting's connection on the process's service.

    Raises:
        JoinError: the service did not start, or the SDK could not make a connection.
    """
    service = await call(shared_service, sdk, app_id, log_dir)
    conn_config, publish_config = connection_configs(sdk, publish=publish)
    conn = await call(service.create_rtc_connection, conn_config, publish_config)
    # None when not initialised; a half-built object on a NULL create
    # (never released: its handles are None and the wrapper passes them on unchecked).
    if conn is None or getattr(conn, "conn_handle", None) is None:
        raise JoinError(
            f"the Agora SDK could not create a connection; check the SDK log in {log_dir} "
            "and try again"
        )
    return conn


async def prepare_connection(
    call: SdkCall, conn: Any, observers: Observers, tap: TapRegistration | None = None
) -> None:
    """Register every observer once, before ``connect``, so no early event is missed.

    With ``tap``, the native tap's table takes the frames in place of
    ``observers.audio_frame`` (docs/providers.md, "Agora: the native tap").

    Raises:
        JoinError: the connection has no local user, or refused an observer.
    """
    await call(conn.register_observer, observers.connection)
    if await call(conn.register_local_user_observer, observers.local_user) != 0:
        raise JoinError("the Agora connection has no local user; try again")
    local_user = conn.get_local_user()
    # Channels first, then the rate; before the frame observer.
    await call(local_user.set_playback_audio_frame_before_mixing_parameters, 1, 16000)
    if tap is not None:
        if await call(tap.register) != 0:
            raise JoinError("the Agora connection refused the audio tap; try again")
        return
    # enable_vad=0, vad_configure=None: the SDK's Python VAD is slow and leaks.
    if await call(conn.register_audio_frame_observer, observers.audio_frame, 0, None) != 0:
        raise JoinError("the Agora connection refused the audio observer; try again")
