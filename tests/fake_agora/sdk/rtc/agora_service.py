"""agora.rtc.agora_service of the fake SDK: the process-wide service."""

from ..fake_control import FakeAgoraUseAfterRelease, world
from ._unreproduced import _AgoraServiceSurface

# The real module re-exports the configuration classes.
from .agora_base import *  # noqa: F403
from .media_node_factory import MediaNodeFactory
from .rtc_connection import RTCConnection


class AgoraService(_AgoraServiceSurface):
    def __init__(self) -> None:
        self.service_handle = object()
        self.inited = False
        self.media_node_factory = None
        self.enable_apm = False
        self.apm_config = None
        self._released = False

    def initialize(self, config):
        if self._released:
            raise FakeAgoraUseAfterRelease("fake agora: initialize after AgoraService.release")
        if self.inited:
            return 0
        # The wrapper mutates the caller's config; appid None raises AttributeError.
        config.app_id = config.appid.encode()
        if not config.appid or (
            world.valid_app_ids is not None and config.appid not in world.valid_app_ids
        ):
            # A native initialise failure still returned 0.
            return 0
        self.inited = True
        self.media_node_factory = MediaNodeFactory(object())
        self.enable_apm = config.enable_apm
        self.apm_config = config.apm_config
        # The return value is the extension-enable result (-4 observed).
        return world.extension_result

    def release(self):
        if self._released:
            raise FakeAgoraUseAfterRelease("fake agora: AgoraService.release called twice")
        self._released = True
        self.inited = False
        self.media_node_factory = None

    def create_rtc_connection(self, con_config, publish_config):
        if not self.inited:
            return None
        return RTCConnection(self, con_config, publish_config)

    def set_log_file(self, log_path: str, log_size: int = 512 * 1024):
        return 0 if self.inited else -1
