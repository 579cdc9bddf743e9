"""agora.rtc.voice_detection of the fake SDK: only the VAD config (the VAD stays off)."""


class AudioVadConfigV2:
    def __init__(
        self,
        preStartRecognizeCount: int = 16,
        startRecognizeCount: int = 30,
        stopRecognizeCount: int = 50,
        activePercent: float = 0.7,
        inactivePercent: float = 0.5,
        start_voiceprob: int = 70,
        stop_voiceporb: int = 50,
        rmsThreshold: int = -50,
    ):
        self.pre_start_recognize_count = preStartRecognizeCount
        self.start_recognize_count = startRecognizeCount
        self.stop_recognize_count = stopRecognizeCount
        self.activePercent = activePercent
        self.inactivePercent = inactivePercent
        self.start_voiceprob = start_voiceprob
        self.stop_voiceprob = stop_voiceporb
        self.start_rms = rmsThreshold
        self.stop_rms = rmsThreshold
        self.enable_adaptive_rms_threshold = False
        self.adaptive_rms_threshold_factor = 0.67
        print("AudioVadConfigV2:", self.__dict__)  # the real one prints too
