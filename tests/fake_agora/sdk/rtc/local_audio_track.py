"""agora.rtc.local_audio_track of the fake SDK (the connection's private PCM track)."""

from ._unreproduced import _LocalAudioTrackSurface


class LocalAudioTrack(_LocalAudioTrackSurface):
    def __init__(self, track_handle) -> None:
        self.track_handle = track_handle
        self._enabled = False
        self._clear = None

    def set_enabled(self, enable):
        self._enabled = bool(enable)
        return 0

    def is_enabled(self):
        return self._enabled

    def set_max_buffer_audio_frame_number(self, num):
        return 0

    def set_send_delay_ms(self, delay_ms: int):
        return 0

    def clear_sender_buffer(self):
        if self._clear is not None:
            self._clear()
        return 0

    def release(self):
        self.track_handle = None
