"""agora.rtc.rtc_connection of the fake SDK: one channel join."""

from ..fake_control import world
from ._unreproduced import _RTCConnectionSurface
from .agora_base import AudioPublishType, AudioScenarioType, PcmAudioFrame
from .local_audio_track import LocalAudioTrack
from .local_user import LocalUser
from .voice_detection import AudioVadConfigV2


class RTCConnection(_RTCConnectionSurface):
    def __init__(self, service, conn_config, publish_config) -> None:
        self.rtc_engine = service
        self.publish_config = publish_config
        self.con_observer_handle = None
        self._con_observer = None
        self._audio_sender = None
        self._audio_track = None
        self._native = world.new_connection(self)
        if world.fail_connection_create:
            # A NULL native create leaves a half-built object.
            self.conn_handle = None
            self.local_user = None
            self.local_user_handle = None
            return
        self.conn_handle = object()
        self.local_user_handle = object()
        self.local_user = LocalUser(self.local_user_handle, self)
        native = self._native
        native.auto_subscribe = bool(conn_config.auto_subscribe_audio)
        native.role = int(conn_config.client_role_type)
        # The capabilities observer exists only for AI_SERVER.
        native.ai_server_scenario = (
            publish_config.audio_scenario == AudioScenarioType.AUDIO_SCENARIO_AI_SERVER
        )
        if (
            publish_config.is_publish_audio
            and publish_config.audio_publish_type == AudioPublishType.AUDIO_PUBLISH_TYPE_PCM
        ):
            self._create_track()

    def _create_track(self):
        factory = self.rtc_engine.media_node_factory
        self._audio_sender = factory.create_audio_pcm_data_sender()
        native = self._native
        self._audio_sender._sink = lambda data, rate, ch: world.push(native, data, rate, ch)
        self._audio_track = LocalAudioTrack(object())
        self._audio_track._clear = lambda: world.clear_pending(native)
        self._audio_track.set_enabled(1)
        self._audio_track.set_max_buffer_audio_frame_number(100000)
        self._audio_track.set_send_delay_ms(10)
        native.has_track = True

    def _alive(self, what):
        self._native.check_alive(what)

    def connect(self, token: str, chan_id: str, user_id: str) -> int:
        self._alive("connect")
        # The wrapper encodes all three: None, int or bytes raise AttributeError.
        token.encode(), chan_id.encode(), user_id.encode()
        return world.connect(self._native, token, chan_id, user_id)

    def disconnect(self) -> int:
        self._alive("disconnect")
        self.unpublish_audio()
        # Frame and local-user observers go, the connection observer stays.
        self._native.frame_observer = None
        self._native.vad_broken = False
        self._native.user_observer = None
        if self.local_user is not None:
            self.local_user.audio_frame_observer = None
            self.local_user.user_observer = None
        return world.disconnect(self._native)

    def renew_token(self, token) -> int:
        self._alive("renew_token")
        token.encode()
        return world.renew_token(self._native, token)

    def register_observer(self, conn_observer) -> int:
        self._alive("register_observer")
        self._con_observer = conn_observer
        self.con_observer_handle = object()
        self._native.conn_observer = conn_observer
        return 0

    def send_stream_message(self, data) -> int:
        self._alive("send_stream_message")
        if data is None:
            return -1001
        if not isinstance(data, str | bytes):
            return -1002
        world.stream_messages.append(data.encode() if isinstance(data, str) else data)
        return 0

    def get_local_user(self):
        if self._native.released:
            return None  # the one call that is safe after release
        return self.local_user

    def release(self):
        self._alive("release")
        self._native.conn_observer = None
        self._native.frame_observer = None
        self._native.user_observer = None
        world.disconnect(self._native)
        self._native.released = True
        self.conn_handle = None
        self.local_user = None
        self._audio_track = None
        self._audio_sender = None

    def register_audio_frame_observer(self, observer, enable_vad: int, vad_configure) -> int:
        self._alive("register_audio_frame_observer")
        if self.local_user is None:
            return -1000
        if self.local_user.audio_frame_observer is not None:
            # The wrapper calls a method LocalUser no longer has.
            self.local_user.unregister_audio_frame_observer()
        if enable_vad and isinstance(vad_configure, AudioVadConfigV2):
            raise NotImplementedError("fake agora: the SDK's Python VAD is not reproduced")
        self.local_user.audio_frame_observer = observer
        self._native.frame_observer = observer
        self._native.vad_broken = bool(enable_vad)
        world.frame_observer_registered(self._native)
        return 0

    def register_local_user_observer(self, observer) -> int:
        self._alive("register_local_user_observer")
        if self.local_user is None:
            return -1000
        self.local_user.user_observer = observer
        self.local_user.user_observer_inner = object()
        self._native.user_observer = observer
        return 0

    def register_audio_encoded_frame_observer(self, observer) -> int:
        self._alive("register_audio_encoded_frame_observer")
        return -1000  # not implemented, always -1000

    def publish_audio(self) -> int:
        self._alive("publish_audio")
        if self._audio_track is None:
            return -1000
        return world.publish(self._native)

    def unpublish_audio(self) -> int:
        self._alive("unpublish_audio")
        if self._audio_track is None:
            return -1000
        return world.unpublish(self._native)

    def interrupt_audio(self) -> int:
        self._alive("interrupt_audio")
        if self._audio_track is not None:
            if self.publish_config.audio_scenario == AudioScenarioType.AUDIO_SCENARIO_AI_SERVER:
                self.unpublish_audio()
                self.publish_audio()
            self._audio_track.clear_sender_buffer()
        world.clear_pending(self._native)
        return -1000  # the result is never assigned

    def push_audio_pcm_data(self, data, sample_rate, channels, start_pts: int = 0) -> int:
        self._alive("push_audio_pcm_data")
        if self._audio_sender is None:
            return -1001
        if len(data) % int(sample_rate / 1000 * 2 * channels) != 0:
            return -1002
        frame = PcmAudioFrame(
            data=data,
            samples_per_channel=len(data) // (2 * channels),
            bytes_per_sample=2,
            number_of_channels=channels,
            sample_rate=sample_rate,
            timestamp=0,
            present_time_ms=start_pts,
        )
        return self._audio_sender.send_audio_pcm_data(frame)

    def update_audio_scenario(self, scenario: AudioScenarioType) -> int:
        if self._native.released or self.conn_handle is None:
            return -1001
        scenario.value  # noqa: B018 - the wrapper reads .value: a plain int raises
        self.publish_config.audio_scenario = scenario
        self._native.ai_server_scenario = scenario == AudioScenarioType.AUDIO_SCENARIO_AI_SERVER
        if self._audio_track is None:
            return self.publish_audio()  # -1000 without a track
        world.unpublish(self._native)
        self._create_track()
        return self.publish_audio()

    def is_push_to_rtc_completed(self) -> bool:
        self._alive("is_push_to_rtc_completed")
        return self._native.push_completed()

    def get_sid(self) -> str:
        self._alive("get_sid")
        return f"fake-sid-{self._native.conn_id}"
