"""agora.rtc.media_node_factory of the fake SDK (created by AgoraService.initialize)."""

from ._unreproduced import _MediaNodeFactorySurface
from .audio_pcm_data_sender import AudioPcmDataSender


class MediaNodeFactory(_MediaNodeFactorySurface):
    def __init__(self, media_node_factory) -> None:
        self.media_node_factory = media_node_factory

    def create_audio_pcm_data_sender(self):
        return AudioPcmDataSender(object())

    def release(self):
        self.media_node_factory = None
