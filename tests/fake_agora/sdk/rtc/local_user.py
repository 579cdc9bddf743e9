"""agora.rtc.local_user of the fake SDK: role, subscriptions, frame parameters."""

from ..fake_control import world
from ._unreproduced import _LocalUserSurface


class LocalUser(_LocalUserSurface):
    def __init__(self, local_user_handle, connection) -> None:
        self.user_handle = local_user_handle
        self.connection = connection
        self.user_observer = None
        self.user_observer_inner = None
        self.audio_frame_observer = None
        self.video_frame_observer = None
        self.video_frame_observer_handler = None
        self.video_encoded_frame_observer = None
        self.video_encoded_frame_observer_handler = None

    @property
    def _native(self):
        native = self.connection._native
        native.check_alive("LocalUser method")
        return native

    def set_user_role(self, role):
        return world.set_role(self._native, int(role))

    def get_user_role(self):
        return self._native.role

    def subscribe_audio(self, user_id):
        native = self._native
        if user_id is None:
            return -1000
        user_id.encode()  # an int uid raises AttributeError
        world.subscribe(native, user_id)
        return 0

    def subscribe_all_audio(self):
        world.subscribe(self._native, None)
        return 0

    def unsubscribe_audio(self, user_id):
        native = self._native
        user_id.encode()
        world.unsubscribe(native, user_id)
        return 0

    def unsubscribe_all_audio(self):
        world.unsubscribe(self._native, None)
        return 0

    def set_playback_audio_frame_before_mixing_parameters(self, channels, sample_rate_hz):
        native = self._native
        if (channels, sample_rate_hz) != (1, 16000):
            raise NotImplementedError("fake agora: only 1 channel at 16000 Hz is reproduced")
        native.frame_format = (channels, sample_rate_hz)
        return 0

    def set_audio_volume_indication_parameters(self, interval_in_ms, smooth, report_vad):
        self._native  # noqa: B018 - raises after release
        return 0

    def get_rtc_connection(self):
        return self.connection

    def get_remote_audio_track(self, uid):
        # References an attribute that does not exist in 2.4.10.
        return self._remote_audio_track_map_by_uid[uid]

    def set_audio_scenario(self, scenario_type):
        scenario_type.value  # noqa: B018 - needs the enum: a plain int raises
        return self.connection.update_audio_scenario(scenario_type)
