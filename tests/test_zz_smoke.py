import asyncio
from pathlib import Path
from recorder.transport.agora.transport import AgoraTransport
from tests.test_agora_transport import Sink, tone

async def test_smoke(world, tmp_path: Path):
    world.tick_s = 0.002
    t = AgoraTransport(app_id="0123456789abcdef0123456789abcdef", channel="standup", bot_uid=9999, log_dir=tmp_path/"l", join_timeout_s=2, leave_timeout_s=1, call_timeout_s=2)
    sink = Sink()
    await t.start(sink)
    ch = world.channel("standup")
    ch.add_user(101)
    ch.speak(101, tone(500))
    await sink.wait(lambda: len(sink.pcm(101)) >= len(tone(400)))
    assert await asyncio.to_thread(world.wait_idle, 5)
    await t.stop()
    assert sink.pcm(101) == tone(500)
    print(world.counts)
