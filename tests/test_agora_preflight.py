"""Agora SDK pre-flight and guarded import, against stand-in packages (never the network)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import ssl
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.errors import TransportUnavailable
from recorder.transport.agora.preflight import (
    AGORA_MODULES,
    INSTALL_HINT,
    load_agora_sdk,
    locate_agora_sdk,
)

URL = "https://download.agora.io/sdk/release/agora_rtc_sdk_x86_64-linux-gnu-test.zip"
LINUX_LIBS = ("libagora_rtc_sdk.so", "libaosl.so")


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
    (pkg / "__init__.py").write_text(f"URL = {URL!r}\n" + textwrap.dedent(init))
    (pkg / "rtc" / "__init__.py").write_text("")
    for module in AGORA_MODULES.values():
        leaf = module.rsplit(".", 1)[1]
        (pkg / "rtc" / f"{leaf}.py").write_text("NAME = " + repr(module) + "\n")
    (pkg / "rtc" / "agora_service.py").write_text("NAME = 'svc'\n" + textwrap.dedent(service))
    for lib in libs:
        (pkg / "agora_sdk" / lib).write_bytes(b"\x7fELF")
    if version is not None:
        (pkg / "version.txt").write_text(version + "\n")
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
    ("libs", "missing"),
    [((), "libagora_rtc_sdk.so, libaosl.so"), (("libagora_rtc_sdk.so",), "libaosl.so")],
)
def test_missing_native_library_refuses_before_import(
    site: Path, tmp_path: Path, libs: tuple[str, ...], missing: str
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
    _assert_unavailable(info, missing, "would try to download it")
    assert not marker.exists()
    assert "agora" not in sys.modules
    assert (site / "agora" / "agora_sdk").is_dir()


def test_macos_needs_the_dylib_not_libaosl(site: Path) -> None:
    make_sdk(site, libs=("libAgoraRtcKit.dylib",))
    found = locate_agora_sdk(system="darwin", machine="arm64")
    assert found.native_library.name == "libAgoraRtcKit.dylib"
    with pytest.raises(TransportUnavailable) as info:
        locate_agora_sdk(system="linux", machine="aarch64")
    _assert_unavailable(info, "libagora_rtc_sdk.so")


@pytest.mark.parametrize(
    ("version", "words"),
    [
        (None, "no version.txt"),
        ("", "no version.txt"),
        ("https://download.agora.io/sdk/release/older.zip", "does not match"),
    ],
)
def test_version_file_must_match_the_sdk(site: Path, version: str | None, words: str) -> None:
    make_sdk(site, version=version, init="raise AssertionError('imported')\n")
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
    assert (agora_logger.propagate, agora_logger.level, agora_logger.handlers) == before_logger


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
