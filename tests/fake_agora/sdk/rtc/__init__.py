"""agora.rtc of the fake SDK (the real one loads the native libraries here, spec §1.2)."""
