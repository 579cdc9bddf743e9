"""agora.rtc.audio_pcm_data_sender of the fake SDK (owned by the connection)."""

import ctypes

from ._unreproduced import _AudioPcmDataSenderSurface


class AudioPcmDataSender(_AudioPcmDataSenderSurface):
    def __init__(self, handle) -> None:
        self.sender_handle = handle
        self._sink = None

    def send_audio_pcm_data(self, frame):
        # As the real sender: (c_char * n).from_buffer(data) -> bytes raise TypeError.
        data = frame.data
        (ctypes.c_char * len(data)).from_buffer(data)
        result = (
            0
            if self._sink is None
            else self._sink(bytes(data), frame.sample_rate, frame.number_of_channels)
        )
        frame.data = None  # the wrapper mutates the frame
        return result

    def release(self):
        self.sender_handle = None
        return 0
