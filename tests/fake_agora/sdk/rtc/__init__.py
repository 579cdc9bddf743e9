"""agora.rtc of the fake SDK (the real one loads the native libraries here)."""
