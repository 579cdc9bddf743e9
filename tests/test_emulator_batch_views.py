"""The async emulator's read views and option shaping, over real HTTP on loopback.

Spec: /work/shared/specs/assemblyai-async-transcription.md, section 11 items 15, 18, 20;
sections 7.4-7.6.
"""

from __future__ import annotations

import asyncio
import re

from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.batch.views import PARAGRAPH_GAP_MS
from recorder.tonecode import encode_words, silence
from tests.support.timing import TIMEOUT
from tests.test_emulator_batch_scoping import Api
from tests.test_repair_async_api import flac

TEXT = "Ship it on Friday. Alpha bravo charlie? Delta echo friday!"


async def test_sentences_paragraphs_and_word_search() -> None:
    async with BatchEmulator().serve() as server:
        api = Api(server.url, "k")
        done = await api.transcribe(TEXT)
        path = f"/v2/transcript/{done['id']}"
        _, said = await api.call("GET", path + "/sentences")
        _, paras = await api.call("GET", path + "/paragraphs")
        _, found = await api.call("GET", path + "/word-search?words=friday,alpha%20bravo,zulu")
        missing = await api.call("GET", path + "/word-search")
        too_long = await api.call("GET", path + "/word-search?words=a%20b%20c%20d%20e%20f")
    words = done["words"]
    assert {k: said[k] for k in ("id", "confidence", "audio_duration")} == {
        "id": done["id"],
        "confidence": done["confidence"],
        "audio_duration": done["audio_duration"],
    }
    assert [s["text"] for s in said["sentences"]] == [
        "Ship it on Friday.",
        "Alpha bravo charlie?",
        "Delta echo friday!",
    ]
    first = said["sentences"][0]
    assert first["words"] == words[:4] and (first["start"], first["end"]) == (
        words[0]["start"],
        words[3]["end"],
    )
    assert set(first) >= {"text", "start", "end", "confidence", "words", "speaker"}
    # The sentences follow each other without a long pause: one paragraph.
    assert [p["text"] for p in paras["paragraphs"]] == [TEXT]
    assert set(paras["paragraphs"][0]) == {"text", "start", "end", "confidence", "words"}
    assert found["id"] == done["id"] and found["total_count"] == 3
    friday, alpha_bravo = found["matches"]
    assert friday == {
        "text": "friday",
        "count": 2,
        "timestamps": [[words[3]["start"], words[3]["end"]], [words[9]["start"], words[9]["end"]]],
        "indexes": [3, 9],
    }
    assert alpha_bravo["indexes"] == [4]
    assert alpha_bravo["timestamps"] == [[words[4]["start"], words[5]["end"]]]
    assert missing[0] == 400 and too_long[0] == 400


async def test_captions_follow_chars_per_caption() -> None:
    async with BatchEmulator().serve() as server:
        api = Api(server.url, "k")
        done = await api.transcribe(TEXT)
        path = f"/v2/transcript/{done['id']}"
        _, srt = await api.call("GET", path + "/srt?chars_per_caption=12")
        _, vtt = await api.call("GET", path + "/vtt?chars_per_caption=20")
        _, default = await api.call("GET", path + "/srt")
        bad = await api.call("GET", path + "/srt?chars_per_caption=0")
    cues = [block.split("\n") for block in srt.strip().split("\n\n")]
    assert [int(cue[0]) for cue in cues] == list(range(1, len(cues) + 1))
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", c[1]) for c in cues)
    texts = [cue[2] for cue in cues]
    assert " ".join(texts) == TEXT
    assert all(len(text) <= 12 for text in texts) and len(texts) > 4
    assert vtt.startswith("WEBVTT\n\n")
    vtt_cues = [block.split("\n") for block in vtt.strip().split("\n\n")[1:]]
    # The spec's example: minutes, seconds and milliseconds when under an hour.
    assert all(re.fullmatch(r"\d\d:\d\d\.\d{3} --> \d\d:\d\d\.\d{3}", c[0]) for c in vtt_cues)
    assert all(len(c[1]) <= 20 for c in vtt_cues)
    assert len(default.strip().split("\n\n")) == 2  # 10 words, 8 to a caption by default
    assert bad[0] == 400


async def test_redacted_audio_is_202_until_ready_then_200_then_gone() -> None:
    redact = {"redact_pii": True, "redact_pii_audio": True, "redact_pii_policies": ["person_name"]}
    behaviour = BatchBehaviour(redacted_audio_delay_s=TIMEOUT / 2)
    async with BatchEmulator(behaviour=behaviour).serve() as server:
        api = Api(server.url, "k")
        done = await api.transcribe("Hi Bob.", **redact)
        path = f"/v2/transcript/{done['id']}/redacted-audio"
        pending = await api.call("GET", path)
        async with asyncio.timeout(TIMEOUT * 2):
            # Polled as a client polls the API: the emulator's clock makes it ready.
            while (ready := await api.call("GET", path))[0] == 202:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        plain = await api.transcribe("Hi Bob.")
        not_asked = await api.call("GET", f"/v2/transcript/{plain['id']}/redacted-audio")
    assert pending[0] == 202
    assert ready[0] == 200 and ready[1]["status"] == "redacted_audio_ready"
    assert ready[1]["redacted_audio_url"].endswith(f"{done['id']}.mp3")
    assert not_asked[0] == 400
    async with BatchEmulator(behaviour=BatchBehaviour(redacted_audio_ttl_s=0)).serve() as server:
        api = Api(server.url, "k")
        done = await api.transcribe("Hi Bob.", **redact)
        expired = await api.call("GET", f"/v2/transcript/{done['id']}/redacted-audio")
    assert expired[0] == 400


async def test_audio_slice_custom_spelling_and_speakers_shape_the_words() -> None:
    async with BatchEmulator().serve() as server:
        api = Api(server.url, "k")
        full = await api.transcribe(TEXT)
        words = full["words"]
        # From the middle of "it" to the middle of "bravo": the words whose middle is inside.
        start, end = (words[1]["start"] + words[1]["end"]) // 2, words[5]["end"]
        sliced = await api.transcribe(TEXT, audio_start_from=start + 1, audio_end_at=end)
        spelled = await api.transcribe(
            TEXT, custom_spelling=[{"from": ["FRIDAY", "echo"], "to": "Freitag"}]
        )
        three = await api.transcribe(TEXT, speaker_labels=True, speakers_expected=3)
        one = await api.transcribe(TEXT, speaker_labels=True, speakers_expected=1)
        ranged = await api.transcribe(
            TEXT, speaker_labels=True, speaker_options={"min_speakers_expected": 3}
        )
        bad_spelling = await api.call(
            "POST", "/v2/transcript", {"audio_url": "x", "custom_spelling": [{"to": "x"}]}
        )
    assert [w["text"] for w in sliced["words"]] == ["on", "Friday.", "Alpha", "bravo"]
    assert sliced["text"] == "on Friday. Alpha bravo"
    assert spelled["text"] == "Ship it on Freitag. Alpha bravo charlie? Delta Freitag Freitag!"
    assert full["utterances"] is None and {w["speaker"] for w in words} == {None}
    assert [w["speaker"] for w in three["words"]] == ["A"] * 4 + ["B"] * 3 + ["C"] * 3
    assert [u["speaker"] for u in three["utterances"]] == ["A", "B", "C"]
    assert three["utterances"][1]["text"] == "Alpha bravo charlie?"
    assert {w["speaker"] for w in one["words"]} == {"A"} and len(one["utterances"]) == 1
    assert {w["speaker"] for w in ranged["words"]} == {"A", "B", "C"}
    assert bad_spelling[0] == 400


async def test_a_long_pause_or_a_new_speaker_starts_a_paragraph() -> None:
    first, _ = encode_words("Ship it on Friday.", 16000)
    second, _ = encode_words("Alpha bravo. Charlie delta.", 16000)
    audio = flac(silence(500) + first + silence(PARAGRAPH_GAP_MS + 500) + second)
    async with BatchEmulator().serve() as server:
        api = Api(server.url, "k")
        upload = await api.upload(audio)
        created = await api.create({"audio_url": upload})
        await api.until(created["id"], status="completed")
        _, paused = await api.call("GET", f"/v2/transcript/{created['id']}/paragraphs")
        diarized = await api.transcribe(TEXT, speaker_labels=True, speakers_expected=2)
        _, by_speaker = await api.call("GET", f"/v2/transcript/{diarized['id']}/paragraphs")
    assert [p["text"] for p in paused["paragraphs"]] == [
        "Ship it on Friday.",
        "Alpha bravo. Charlie delta.",
    ]
    assert [p["text"] for p in by_speaker["paragraphs"]] == [
        "Ship it on Friday.",
        "Alpha bravo charlie?",
        "Delta echo friday!",
    ]
