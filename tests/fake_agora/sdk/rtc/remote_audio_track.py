"""agora.rtc.remote_audio_track of the fake SDK (handed to on_user_audio_track_subscribed)."""

from ._unreproduced import _RemoteAudioTrackSurface


class RemoteAudioTrack(_RemoteAudioTrackSurface):
    def __init__(self, track_handle, user_id) -> None:
        self.track_handle = track_handle
        self.user_id = user_id

    def get_state(self):
        return 2

    def release(self):
        # A no-op in 2.4.10.
        return None
