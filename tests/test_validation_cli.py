"""Every command-line value is checked before anything runs: one line, exit code 2 (or 1).

A value that parses is shown to be accepted by what happens next: the command
goes on to fail on the missing replay file instead.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.cli.common import Duration, FiniteFloat, parse_duration

_PAST_THE_OPTIONS = "error: replay file 'missing.json' does not exist"


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, list(args), env={"ASSEMBLYAI_API_KEY": "k", "XDG_DATA_HOME": str(tmp_path)}
    )
    assert isinstance(result.exception, SystemExit), result.exception  # never a crash
    return result.exit_code, result.output


def join(tmp_path: Path, *args: str) -> tuple[int, str]:
    return invoke(tmp_path, "join", "--transport", "replay:missing.json", *args)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2.5", 2.5)],
)
def test_durations_in_every_form(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("flag", ["--duration", "--idle-close"])
@pytest.mark.parametrize("text", ["90", "90s", "15m", "1h", "1h30m"])
def test_every_duration_option_takes_every_form(tmp_path: Path, flag: str, text: str) -> None:
    code, output = join(tmp_path, flag, text)
    assert (code, output.strip()) == (1, _PAST_THE_OPTIONS)


@pytest.mark.parametrize("text", ["90", "15m", "1h30m"])
def test_recap_every_takes_every_form(tmp_path: Path, text: str) -> None:
    code, output = join(tmp_path, "--recap", "--recap-every", text)
    assert (code, output.strip()) == (1, _PAST_THE_OPTIONS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-close", "nan"], "invalid value for '--idle-close': 'nan' is not a duration"),
        (["--idle-close", "inf"], "invalid value for '--idle-close': 'inf' is not a duration"),
        (["--idle-close", "-1"], "invalid value for '--idle-close': '-1' is not a duration"),
        (["--idle-close", "0.1"], "'0.1' is too short; use at least 0.5s"),
        (["--duration", "nan"], "invalid value for '--duration': 'nan' is not a duration"),
        (["--duration", "infinity"], "'infinity' is not a duration"),
        (["--duration", "-5m"], "'-5m' is not a duration; use e.g. 90s, 10m, 1h or 1h30m"),
        (["--duration", "9" * 400], "is not a duration"),
        (["--duration", "1000h"], "'1000h' is too long; use at most 604800s"),
        (["--duration", "1e3"], "'1e3' is not a duration"),
        (["--recap", "--recap-every", "nan"], "'nan' is not a duration"),
        (["--recap", "--recap-every", "5s"], "'5s' is too short; use at least 10s"),
        (["--sessions-per-minute", "nan"], "'--sessions-per-minute': 'nan' is not a finite number"),
        (["--sessions-per-minute", "inf"], "'--sessions-per-minute': inf is not in the range"),
        (["--sessions-per-minute", "-1"], "'--sessions-per-minute': -1.0 is not in the range"),
        (["--speed", "nan"], "invalid value for '--speed': 'nan' is not a finite number"),
        (["--speed", "inf"], "invalid value for '--speed': inf is not in the range"),
        (["--speed", "-2"], "invalid value for '--speed': -2.0 is not in the range"),
        (["--speed", "1000"], "invalid value for '--speed': 1000.0 is not in the range"),
        (["--durration", "5"], "no such option '--durration'. Did you mean '--duration'?"),
    ],
)
def test_bad_values_are_one_usage_line(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = join(tmp_path, *args)
    assert code == 2
    assert output.startswith("error: ") and message in output, output
    assert output.rstrip().endswith("(see 'cli join --help')")
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--speed", "nan"], "invalid value for '--speed': 'nan' is not a finite number"),
        (["demo", "--duration", "nan"], "'nan' is not a duration"),
        (["emulate", "--realtime-factor", "nan"], "'nan' is not a finite number"),
        (["emulate", "--realtime-factor", "0"], "0.0 is not in the range x>0"),
        (["emulate", "--port", "70000"], "70000 is not in the range 0<=x<=65535"),
    ],
)
def test_other_commands_check_their_numbers(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 2
    assert message in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--stt-url", "ws://127.0.0.1:99999/v3/ws"],
            "--stt-url: 'ws://127.0.0.1:99999/v3/ws' has a port out of range 1-65535",
        ),
        (
            ["--stt-url", "ws://127.0.0.1:0/v3/ws"],
            "--stt-url: 'ws://127.0.0.1:0/v3/ws' has a port out of range 1-65535",
        ),
        (
            ["--stt-url", "ws://127.0.0.1:port/v3/ws"],
            "--stt-url: 'ws://127.0.0.1:port/v3/ws' has a port that is not a number",
        ),
        (
            ["--stt-url", "ws://[::1:8765/v3/ws"],
            "--stt-url: 'ws://[::1:8765/v3/ws' has a malformed IPv6 host",
        ),
        (["--stt-url", "ws://[zz]:80/v3/ws"], "has a malformed IPv6 host"),
        (["--stt-url", "ws:///v3/ws"], "--stt-url: 'ws:///v3/ws' has no host"),
        (["--stt-url", "http://h/v3/ws"], "--stt-url must start with ws:// or wss://"),
        (["--stt-url", "ws://h/v3/ws\n"], "holds spaces or control characters"),
        (
            ["--recap", "--agent-url", "wss://h:65536/v1/ws"],
            "--agent-url: 'wss://h:65536/v1/ws' has a port out of range 1-65535; "
            "e.g. ws://127.0.0.1:8765/v1/ws",
        ),
        (
            ["--db", "postgresql://u@h:99999/db"],
            "--db: the database URL postgresql://u@h:99999/db has a port out of range",
        ),
        (
            ["--speech-model", "bogus"],
            "--speech-model: unknown speech model 'bogus'; use one of u3-rt-pro, u3-pro, ",
        ),
    ],
)
def test_bad_urls_and_models_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = join(tmp_path, *args)
    assert code == 1
    assert output.startswith("error: ") and message in output, output
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--stt-url", "ws://me:s3cret@127.0.0.1:8765/v3/ws"],
        ["--stt-url", "ws://me:s3cret@127.0.0.1:99999/v3/ws"],  # the port error showed it too
        ["--async-url", "http://me:s3cret@127.0.0.1:8766"],
        ["--emulator", "http://me:s3cret@127.0.0.1:8765"],
    ],
)
def test_a_password_in_an_endpoint_url_is_refused_and_never_shown(
    tmp_path: Path, args: list[str]
) -> None:
    # It was sent on and printed in every "cannot reach http://me:s3cret@..." line.
    code, output = join(tmp_path, *args)
    assert code == 1
    assert output == (
        f"error: {args[0]} holds a user name or password (user@host); "
        "the API key goes in ASSEMBLYAI_API_KEY, never in a URL\n"
    )
    assert "s3cret" not in output


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8765/v3/ws?who=a@b", "ws://h#x@y"])
def test_an_at_sign_after_the_host_is_not_a_password(tmp_path: Path, url: str) -> None:
    code, output = join(tmp_path, "--stt-url", url)
    assert (code, output.strip()) == (1, _PAST_THE_OPTIONS)


def test_a_bad_speech_model_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["join", "--transport", "replay:missing.json"],
        env={"ASSEMBLYAI_API_KEY": "k", "RECORDER_SPEECH_MODEL": "nano", "XDG_DATA_HOME": "x"},
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: RECORDER_SPEECH_MODEL: unknown speech model 'nano'")


@pytest.mark.parametrize(
    "url", ["ws://[::1]:8765/v3/ws", "wss://streaming.eu.assemblyai.com/v3/ws"]
)
def test_good_urls_pass(tmp_path: Path, url: str) -> None:
    code, output = join(tmp_path, "--stt-url", url, "--speech-model", "universal-3-5-pro")
    assert (code, output.strip()) == (1, _PAST_THE_OPTIONS)


def test_the_types_keep_their_defaults_and_refuse_nan_given_in_code() -> None:
    duration = Duration(min_s=1)
    assert duration.convert(2.0, None, None) == 2.0
    with pytest.raises(click.BadParameter):
        duration.convert(float("nan"), None, None)
    assert FiniteFloat(min=0, allow_infinity=True).convert("inf", None, None) == float("inf")
    with pytest.raises(click.BadParameter):
        FiniteFloat(min=0, allow_infinity=True).convert("nan", None, None)


@pytest.mark.parametrize(
    ("meeting", "message"),
    [
        ("99999999999999999999999", "no meeting with id 99999999999999999999999"),
        ("9223372036854775807", "no meeting with id 9223372036854775807"),
        ("²", "'²' is not a meeting"),
    ],
)
@pytest.mark.parametrize("command", ["show", "export"])
def test_meeting_ids_out_of_range_are_one_line(
    sqlite_url: str, command: str, meeting: str, message: str
) -> None:
    from tests.support.export_data import populate

    populate(sqlite_url)
    result = CliRunner().invoke(cli, [command, meeting, "--db", sqlite_url])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {message}") and len(result.output.splitlines()) == 1


def test_too_many_keyterms_are_refused_before_anything_starts(tmp_path: Path) -> None:
    code, output = join(tmp_path, "--keyterms", ",".join(f"k{i}" for i in range(101)))
    assert (code, output) == (2, "error: --keyterms has 101 terms; the service takes at most 100\n")


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (
            ["--bogus"],
            "error: no such option '--bogus'. Did you mean '--verbose'? (see 'cli --help')\n",
        ),
        (["db", "frob"], "error: no such command 'frob' (see 'cli db --help')\n"),
        (["export"], "error: missing argument 'MEETING' (see 'cli export --help')\n"),
    ],
)
def test_usage_errors_at_every_level_are_one_line(args: list[str], output: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.output) == (2, output)


@pytest.mark.parametrize("args", [[], ["db"]])
def test_no_arguments_still_shows_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.output.startswith("Usage: ") and "Commands:" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"uid": 1, "name": "Ann"}]', 'expected a JSON object like {"101": "Alice"}'),
        ('{"0": "Ann"}', "'0' is not a uid (1 to 4294967295)"),
        ('{"4294967296": "Ann"}', "'4294967296' is not a uid"),
        ('{"1": ""}', "the name for uid 1 must be non-empty text"),
        ('{"1": 5}', "the name for uid 1 must be non-empty text"),
        ('{"1": "A\\ud800"}', "the name for uid 1 holds an invalid character"),
        ("101 Alice\n", "expected lines like 101=Alice, got '101 Alice'"),
        ("alice=101\n", "'alice' is not a uid"),
        (b"\xff\xfe1=A", "is not UTF-8 text"),
    ],
)
def test_bad_speaker_names_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    names = tmp_path / "names.txt"
    names.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, output = join(tmp_path, "--speaker-names", "names.txt")
    assert code == 1
    assert output.startswith("error: --speaker-names file 'names.txt'"), output
    assert message in output and len(output.splitlines()) == 1, output


@pytest.mark.parametrize("flag", ["--prompt", "--keyterms", "--channel", "--speech-model"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [("a\udcffb", "holds bytes that are not UTF-8 text"), ("a\x07b", "holds a control character")],
)
def test_text_options_refuse_what_cannot_be_stored(
    tmp_path: Path, flag: str, value: str, problem: str
) -> None:
    code, output = join(tmp_path, flag, value)
    assert code == 2
    assert output.startswith(f"error: invalid value for '{flag}': {ascii(value)} {problem}")
    assert len(output.splitlines()) == 1


def test_text_options_keep_accents_and_tabs(tmp_path: Path) -> None:
    code, output = join(tmp_path, "--prompt", "Noms: Chloé,\tDmitri", "--keyterms", "Chloé")
    assert (code, output.strip()) == (1, _PAST_THE_OPTIONS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sql", "--timeout", "nan", "SELECT 1"], "'nan' is not a duration"),
        (["sql", "--timeout", "1e308", "SELECT 1"], "'1e308' is not a duration"),
        (["stop", "99999999999999999999999"], "99999999999999999999999 is not in the range"),
        (["cancel", "0"], "0 is not in the range 1<=x<=9223372036854775807"),
        (["webhooks", "remove", "99999999999999999999999"], "is not in the range"),
        (["webhooks", "log", "--endpoint", "-3"], "-3 is not in the range"),
    ],
)
def test_other_commands_refuse_impossible_values(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert result.output.startswith("error: invalid value for ") and message in result.output
    assert len(result.output.splitlines()) == 1


def test_sql_timeout_takes_a_duration(sqlite_url: str) -> None:
    from tests.support.export_data import populate

    populate(sqlite_url)
    result = CliRunner().invoke(
        cli, ["sql", "--timeout", "2m", "SELECT 1 AS one", "--db", sqlite_url]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("output", "code", "message"),
    [
        (
            "/dev/full",
            2,
            "error: -o: cannot tell the format from 'full'; "
            "end the name with .html, .md, .json, .txt, .srt or .vtt",
        ),
        ("notes.docx", 2, "error: -o: cannot tell the format from 'notes.docx'"),
        ("missing/x.html", 1, "error: cannot write 'missing/x.html': the folder '"),
    ],
)
def test_the_demo_checks_its_output_before_playing_the_meeting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, code: int, message: str
) -> None:
    # It played the whole 50 s meeting first, then failed on the file name.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "-o", output], env={"XDG_DATA_HOME": str(tmp_path)})
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code
    assert result.output.startswith(message), result.output
    assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "recorder").exists()  # no database made, no meeting recorded
