"""Agora SDK pre-flight and guarded import, against stand-in packages (never the network)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from agora_standin.plugin import build_site
from fake_agora import native_placeholder, purge_agora_modules

from recorder.errors import TransportUnavailable
from recorder.transport.agora.preflight import (
    AGORA_MODULES,
    INSTALL_HINT,
    expected_version_url,
    judge_agora_sdk,
    load_agora_sdk,
    locate_agora_sdk,
)

URL = "https://download.agora.io/sdk/release/agora_rtc_sdk_x86_64-linux-gnu-test.zip"
OLDER = "https://download.agora.io/sdk/release/agora_rtc_sdk_x86_64-linux-gnu-older.zip"
LINUX_LIBS = ("libagora_rtc_sdk.so", "libaosl.so")
# Shaped like the real agora/__init__.py: older URLs stay in the file, the last
# assignment wins, and the platform picks one (docs/providers.md, "Agora: the stand-in").
CHECK_FUNCTION = """
def _check_download_and_extract_sdk():
    arch = platform.machine()
    url = "https://download.agora.io/sdk/release/agora_rtc_sdk-x86_64-linux-gnu-ancient.zip"
    linux_sdk = "https://download.agora.io/sdk/release/agora_rtc_sdk_x86_64-linux-gnu-older.zip"
    mac_sdk = "https://download.agora.io/sdk/release/agora_sdk_mac-older.zip"
    linux_sdk = "{url}"
    mac_sdk = "https://download.agora.io/sdk/release/agora_sdk_mac-test.zip"
    url = linux_sdk
    if sys.platform == 'darwin':
        url = mac_sdk
    if arch == "aarch64" and sys.platform == 'linux':
        url = "https://download.agora.io/sdk/release/Agora-RTC-aarch64-linux-gnu-test.zip"
    version_url = _get_url_from_version_file("version.txt")
    if version_url == url and is_file_exist:
        return

"""


def _purge_agora() -> None:
    for name in list(sys.modules):
        if name == "agora" or name.startswith("agora."):
            del sys.modules[name]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path where each test writes its own stand-in ``agora``."""
    root = tmp_path / "site"
    root.mkdir()
    _purge_agora()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        _purge_agora()
        importlib.invalidate_caches()


def make_sdk(
    root: Path,
    *,
    init: str = "",
    service: str = "",
    libs: tuple[str, ...] = LINUX_LIBS,
    version: str | None = URL,
) -> Path:
    pkg = root / "agora"
    (pkg / "rtc").mkdir(parents=True)
    (pkg / "agora_sdk").mkdir()
    (pkg / "__init__.py").write_text(CHECK_FUNCTION.format(url=URL) + textwrap.dedent(init))
    (pkg / "rtc" / "__init__.py").write_text("")
    for module in AGORA_MODULES.values():
        leaf = module.rsplit(".", 1)[1]
        (pkg / "rtc" / f"{leaf}.py").write_text("NAME = " + repr(module) + "\n")
    (pkg / "rtc" / "agora_service.py").write_text("NAME = 'svc'\n" + textwrap.dedent(service))
    for lib in libs:
        (pkg / "agora_sdk" / lib).write_bytes(native_placeholder(lib))
    if version is not None:
        (pkg / "version.txt").write_text(version)  # as the SDK's installer writes it
    return pkg


def _assert_unavailable(info: pytest.ExceptionInfo[TransportUnavailable], *words: str) -> None:
    message = str(info.value)
    assert message.startswith("the agora transport is unavailable: ")
    assert message.endswith(INSTALL_HINT)
    assert "-m pip install --no-cache-dir " in message and "[agora]" in message
    assert not message.endswith(".")
    for word in words:
        assert word in message


@pytest.mark.skipif(
    importlib.util.find_spec("agora") is not None, reason="an agora package is installed here"
)
def test_not_installed(site: Path) -> None:
    with pytest.raises(TransportUnavailable) as info:
        load_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, "is not installed")


def test_some_other_agora_package(site: Path) -> None:
    (site / "agora").mkdir()
    (site / "agora" / "__init__.py").write_text("raise AssertionError('imported')\n")
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, "is not agora-python-server-sdk")
    assert "agora" not in sys.modules


@pytest.mark.parametrize(("system", "machine"), [("win32", "AMD64"), ("linux", "armv7l")])
def test_unsupported_platform(site: Path, system: str, machine: str) -> None:
    make_sdk(site)
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system=system, machine=machine)
    _assert_unavailable(info, f"{system}/{machine}")


@pytest.mark.parametrize(
    ("libs", "words"),
    [
        ((), ["libagora_rtc_sdk.so not in", "would delete its native library and try to download"]),
        # The SDK loads libaosl.so unguarded: an OSError, not a download.
        (("libagora_rtc_sdk.so",), ["libaosl.so is missing", "would fail loading it"]),
    ],
)
def test_missing_native_library_refuses_before_import(
    site: Path, tmp_path: Path, libs: tuple[str, ...], words: list[str]
) -> None:
    # This __init__ stands for the real one: it would wipe agora_sdk and download.
    marker = tmp_path / "imported"
    make_sdk(
        site,
        libs=libs,
        init=f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("x")
        raise SystemExit("would rm -rf agora_sdk and download the native library")
        """,
    )
    with pytest.raises(TransportUnavailable) as info:
        load_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, *words)
    assert not marker.exists()
    assert "agora" not in sys.modules
    assert (site / "agora" / "agora_sdk").is_dir()


def test_macos_needs_the_dylib_not_libaosl(site: Path) -> None:
    mac_url = "https://download.agora.io/sdk/release/agora_sdk_mac-test.zip"
    make_sdk(site, libs=("libAgoraRtcKit.dylib",), version=mac_url)
    found = locate_agora_sdk(system="darwin", machine="arm64")
    assert found.native_library.name == "libAgoraRtcKit.dylib"
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system="linux", machine="aarch64")
    _assert_unavailable(info, "libagora_rtc_sdk.so")


@pytest.mark.parametrize(
    ("version", "words"),
    [
        (None, ["no version.txt"]),
        ("", ["no version.txt"]),
        # The SDK compares the raw first line: a newline is a mismatch, and it re-downloads.
        (URL + "\n", ["ends with a newline", f"printf '%s' '{URL}' >"]),
        (URL + "\r\n", ["ends with a newline"]),
        # An older URL of the same file is not this platform's final one.
        (OLDER, [f"names {OLDER}, not the URL this SDK expects", URL, "printf"]),
        ("https://download.agora.io/sdk/release/agora_sdk_mac-test.zip", ["not the URL"]),
        ("garbage", ["does not hold this SDK's download URL"]),
    ],
)
def test_version_file_must_be_exactly_this_platforms_url(
    site: Path, version: str | None, words: list[str]
) -> None:
    make_sdk(site, version=version, init="raise AssertionError('imported')\n")
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, *words, "would delete its native library and try to download it")
    assert judge_agora_sdk(system="linux", machine="x86_64").outcome == "download"


def test_the_platform_picks_the_url(site: Path) -> None:
    source = CHECK_FUNCTION.format(url=URL)
    assert expected_version_url(source, system="linux", machine="x86_64") == URL
    assert expected_version_url(source, system="linux", machine="aarch64") == (
        "https://download.agora.io/sdk/release/Agora-RTC-aarch64-linux-gnu-test.zip"
    )
    assert expected_version_url(source, system="darwin", machine="arm64") == (
        "https://download.agora.io/sdk/release/agora_sdk_mac-test.zip"
    )
    # A shape this reading does not follow: no answer (the caller refuses), never a guess.
    assert expected_version_url("url = compute()\n") is None
    odd = source.replace("if sys.platform == 'darwin':", "if magic():")
    assert expected_version_url(odd, system="linux", machine="x86_64") is None


@pytest.mark.parametrize(
    ("library", "content", "outcome", "words"),
    [
        ("libaosl.so", b"", "fail", "libaosl.so is not a shared library"),
        ("libagora_rtc_sdk.so", b"not a library", "exit", "would exit the process"),
        ("libagora_rtc_sdk.so", b"\x7fELF\x01" + bytes(20), "exit", "32-bit"),
    ],
)
def test_a_library_the_sdk_cannot_load_is_refused(
    site: Path, library: str, content: bytes, outcome: str, words: str
) -> None:
    pkg = make_sdk(site, init="raise AssertionError('imported')\n")
    (pkg / "agora_sdk" / library).write_bytes(content)
    judged = judge_agora_sdk(system="linux", machine="x86_64")
    assert judged.outcome == outcome and words in judged.reason
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, words)


def test_locate_reports_the_install(site: Path) -> None:
    pkg = make_sdk(site, init="raise AssertionError('imported')\n")
    found = locate_agora_sdk(system="linux", machine="x86_64")
    assert found.package_dir == pkg
    assert found.library_dir == pkg / "agora_sdk"
    assert found.native_library == pkg / "agora_sdk" / "libagora_rtc_sdk.so"
    assert found.version == URL
    assert "agora" not in sys.modules


def test_load_success_and_side_effects_contained(
    site: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before_context = ssl._create_default_https_context
    agora_logger = logging.getLogger("agora")
    before_logger = (agora_logger.propagate, agora_logger.level, list(agora_logger.handlers))
    make_sdk(
        site,
        init="""
        import logging, ssl
        logging.getLogger(__name__).error("sdk_library_dir: /somewhere")
        print("Downloading: ----100.00%-----")
        ssl._create_default_https_context = ssl._create_unverified_context
        """,
    )
    sdk = load_agora_sdk(system="linux", machine="x86_64")
    assert sdk.service.NAME == "svc"
    assert sdk.base.__name__ == "agora.rtc.agora_base"
    assert sdk.audio_frame_observer.NAME == "agora.rtc.audio_frame_observer"
    assert sdk.install.version == URL
    assert ssl._create_default_https_context is before_context
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if r.name == "agora"]
    assert "agora import stdout: Downloading" in caplog.text
    assert "agora import log: sdk_library_dir: /somewhere" in caplog.text
    assert (agora_logger.propagate, agora_logger.handlers) == (before_logger[0], before_logger[2])
    # Never below INFO afterwards: the real SDK logs tokens at DEBUG in its callbacks.
    assert agora_logger.level == max(before_logger[1], logging.INFO)


FAILURES = {
    "import_error": ("import agora_native_missing_module\n", "could not be imported"),
    "os_error": ("raise OSError('libaosl.so: cannot open shared object file')\n", "libaosl.so"),
    "url_error": (
        "import urllib.error\nraise urllib.error.URLError('[Errno -3] name resolution')\n",
        "could not be loaded or fetched",
    ),
    "attribute_error": (
        "raise AttributeError('undefined symbol: agora_service_create')\n",
        "does not match the SDK",
    ),
    "sys_exit": ("import sys\nsys.exit(1)\n", "exit code 1"),
    "other": ("raise RuntimeError('surprise')\n", "RuntimeError: surprise"),
}


@pytest.mark.parametrize("where", ["init", "service"])
@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_every_import_failure_becomes_transport_unavailable(
    site: Path, capsys: pytest.CaptureFixture[str], kind: str, where: str
) -> None:
    body, words = FAILURES[kind]
    prelude = "import ssl\nssl._create_default_https_context = ssl._create_unverified_context\n"
    before_context = ssl._create_default_https_context
    if where == "init":
        make_sdk(site, init=prelude + "print('noise')\n" + body)
    else:
        make_sdk(site, init=prelude, service=body)
    with pytest.raises(TransportUnavailable) as info:
        load_agora_sdk(system="linux", machine="x86_64")
    _assert_unavailable(info, words)
    assert info.value.__cause__ is not None
    assert not [name for name in sys.modules if name == "agora" or name.startswith("agora.")]
    assert ssl._create_default_https_context is before_context
    assert capsys.readouterr().out == ""


def test_failed_load_can_be_retried_after_a_fix(site: Path) -> None:
    pkg = make_sdk(site, service="raise OSError('not yet')\n")
    with pytest.raises(TransportUnavailable):
        load_agora_sdk(system="linux", machine="x86_64")
    (pkg / "rtc" / "agora_service.py").write_text("NAME = 'fixed'\n")
    importlib.invalidate_caches()
    assert load_agora_sdk(system="linux", machine="x86_64").service.NAME == "fixed"


def test_keyboard_interrupt_is_not_swallowed(site: Path) -> None:
    make_sdk(site, init="raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_agora_sdk(system="linux", machine="x86_64")


# --- the two defects, reproduced through the real wrapper's import, offline -----------------


def _unreachable_proxy() -> str:
    """A proxy URL on a loopback port nobody listens on: every download is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _import_offline(root: Path) -> subprocess.CompletedProcess[str]:
    """``import agora.rtc.agora_service`` (the real wrapper) in a child with no network."""
    proxy = _unreachable_proxy()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
        "https_proxy": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "HTTP_PROXY": proxy,
    }
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import agora.rtc.agora_service; print('ok')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _older_url(package: Path, current: str) -> str:
    """Another download URL written in the wrapper's own __init__ (an older build)."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("https://download.agora.io/")
        and "x86_64-linux" in node.value
    ]
    return next(url for url in literals if url != current)


@pytest.mark.parametrize("defect", ["trailing newline", "older url of the same file"])
def test_both_defects_through_the_real_import_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    site = build_site(tmp_path / "site")
    if defect == "trailing newline":
        version = site.url + "\n"  # what `echo URL > version.txt` writes
    else:
        version = _older_url(site.package, site.url)
    (site.package / "version.txt").write_text(version, encoding="utf-8")
    library = site.package / "agora_sdk" / "libagora_rtc_sdk.so"

    # The pre-flight refuses, touching nothing, and says how to repair the file.
    purge_agora_modules()
    monkeypatch.syspath_prepend(str(site.root))
    try:
        with pytest.raises(TransportUnavailable) as info:
            load_agora_sdk()
    finally:
        purge_agora_modules()
    _assert_unavailable(info, "would delete its native library and try to download it")
    assert f"printf '%s' '{site.url}' >" in str(info.value)
    assert library.is_file() and "agora" not in sys.modules

    # What the SDK's own import does with that file: deletes its libraries, then fails.
    done = _import_offline(site.root)
    assert done.returncode != 0 and "URLError" in done.stderr, done.stderr[-2000:]
    assert not library.exists()

    # Written as the installer writes it, the same import works offline.
    fine = build_site(tmp_path / "fine")
    done = _import_offline(fine.root)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
    assert (fine.package / "agora_sdk" / "libagora_rtc_sdk.so").is_file()
