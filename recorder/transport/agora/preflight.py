"""Find and import the Agora SDK without letting its import do harm.

``import agora`` may delete and re-download its native library, print to
stdout, log errors, disable TLS verification process-wide and call
``sys.exit(1)`` (docs/providers.md, "Agora: loading the SDK"). This module
checks the installed files first, without importing anything, and then imports
the SDK inside a guarded function that turns every failure into one
:class:`~recorder.errors.TransportUnavailable`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import logging
import platform
import ssl
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from recorder.errors import TransportUnavailable

__all__ = [
    "AGORA_MODULES",
    "INSTALL_HINT",
    "AgoraSdk",
    "AgoraSdkInstall",
    "load_agora_sdk",
    "locate_agora_sdk",
]

logger = logging.getLogger(__name__)


def _install_hint() -> str:
    """The command that installs the Agora extra into the Python running recorder.

    The package is not on PyPI yet: it installs from a clone (README, "Real use").
    Run from a clone (as ``make demo`` installs it), the command names that clone.
    """
    import shlex

    clone = Path(__file__).resolve().parents[3]
    if (clone / "pyproject.toml").is_file():
        target = shlex.quote(f"{clone}[agora]")
    else:
        target = "'.[agora]' (in a clone of the recorder repository)"
    return (
        f"install the extra with: {shlex.quote(sys.executable)} -m pip install --no-cache-dir "
        f"{target} (Linux x86_64/aarch64 or macOS; the install downloads Agora's native "
        "library once, so it needs network access)"
    )


INSTALL_HINT = _install_hint()

# The SDK modules the transport uses, by the attribute name they get on AgoraSdk.
AGORA_MODULES = {
    "base": "agora.rtc.agora_base",
    "service": "agora.rtc.agora_service",
    "connection_observer": "agora.rtc.rtc_connection_observer",
    "local_user_observer": "agora.rtc.local_user_observer",
    "audio_frame_observer": "agora.rtc.audio_frame_observer",
}

# Native builds exist for these platforms only (docs/providers.md, "Agora: loading the SDK").
_SUPPORTED_MACHINES = {"linux": {"x86_64", "amd64", "aarch64", "arm64"}}
# agora/__init__.py checks the main library and, on Linux, loads libaosl.so
# without a try; agora/rtc/__init__.py loads the main library (docs/providers.md,
# "Agora: loading the SDK").
_REQUIRED_LIBRARIES = {
    "linux": ("libagora_rtc_sdk.so", "libaosl.so"),
    "darwin": ("libAgoraRtcKit.dylib",),
}
_DOWNLOAD_HOST = "https://download.agora.io/"


@dataclass(frozen=True, slots=True)
class AgoraSdkInstall:
    """Where the Agora SDK is installed, as found without importing it.

    Attributes:
        package_dir: the ``agora`` package directory.
        library_dir: its ``agora_sdk`` directory holding the native libraries.
        native_library: the main native library file.
        version: the content of ``version.txt`` (the download URL it came from).
    """

    package_dir: Path
    library_dir: Path
    native_library: Path
    version: str


@dataclass(frozen=True, slots=True)
class AgoraSdk:
    """The imported SDK modules the Agora transport needs (untyped, from the SDK).

    Attributes:
        base: ``agora.rtc.agora_base`` (configs, enums, ``AudioFrame``).
        service: ``agora.rtc.agora_service`` (``AgoraService``).
        connection_observer: ``agora.rtc.rtc_connection_observer``.
        local_user_observer: ``agora.rtc.local_user_observer``.
        audio_frame_observer: ``agora.rtc.audio_frame_observer``.
        install: where the SDK was found.
    """

    base: types.ModuleType
    service: types.ModuleType
    connection_observer: types.ModuleType
    local_user_observer: types.ModuleType
    audio_frame_observer: types.ModuleType
    install: AgoraSdkInstall


def _unavailable(reason: str) -> TransportUnavailable:
    return TransportUnavailable(f"the agora transport is unavailable: {reason}; {INSTALL_HINT}")


def _download_urls(init_file: Path) -> set[str] | None:
    """Return the download URLs written as literals in ``agora/__init__.py``.

    None means the file could not be read or parsed, so no comparison is made.
    """
    try:
        tree = ast.parse(init_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    return {
        node.value.strip()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(_DOWNLOAD_HOST)
    }


def locate_agora_sdk(*, system: str | None = None, machine: str | None = None) -> AgoraSdkInstall:
    """Find the installed Agora SDK and its native library, importing nothing.

    Only :func:`importlib.util.find_spec` on the top-level name is used, which
    does not run ``agora/__init__.py``. The native files are the ones whose
    absence makes that ``__init__`` delete and re-download its library or exit
    (docs/providers.md, "Agora: loading the SDK").

    Args:
        system: ``sys.platform`` to check for (tests); defaults to this one.
        machine: ``platform.machine()`` to check for (tests); defaults to this one.

    Returns:
        Where the SDK is.

    Raises:
        TransportUnavailable: the platform is unsupported, or the package or
            its native library is missing or incomplete.
    """
    system = sys.platform if system is None else system
    machine = platform.machine() if machine is None else machine
    if system not in _REQUIRED_LIBRARIES or (
        system in _SUPPORTED_MACHINES and machine.lower() not in _SUPPORTED_MACHINES[system]
    ):
        raise _unavailable(f"the Agora server SDK has no native build for {system}/{machine}")
    try:
        spec = importlib.util.find_spec("agora")
    except (ImportError, ValueError) as exc:
        raise _unavailable(f"the 'agora' package cannot be inspected ({exc})") from exc
    if spec is None or not spec.submodule_search_locations:
        raise _unavailable("the Agora SDK (package 'agora') is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (package_dir / "rtc" / "agora_service.py").is_file() or spec.origin is None:
        raise _unavailable(f"the 'agora' package at {package_dir} is not agora-python-server-sdk")
    library_dir = package_dir / "agora_sdk"
    required = _REQUIRED_LIBRARIES[system]
    missing = [name for name in required if not (library_dir / name).is_file()]
    if missing:
        # Importing now would rm -rf agora_sdk and try to download it.
        raise _unavailable(
            f"the Agora native library is missing ({', '.join(missing)} not in {library_dir}); "
            "importing the SDK now would try to download it"
        )
    try:
        version = (package_dir / "version.txt").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        version = ""
    if not version:
        raise _unavailable(
            f"the Agora native library has no version.txt in {package_dir}; "
            "importing the SDK now would try to download it again"
        )
    urls = _download_urls(Path(spec.origin))
    if urls and version not in urls:
        raise _unavailable(
            f"the Agora native library in {library_dir} does not match this SDK version; "
            "importing the SDK now would try to download it again"
        )
    return AgoraSdkInstall(
        package_dir=package_dir,
        library_dir=library_dir,
        native_library=library_dir / required[0],
        version=version,
    )


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _contained_import() -> Iterator[tuple[_Capture, io.StringIO]]:
    """Hold the SDK's import-time side effects in.

    Its ``agora`` logger is detached from ours and captured, its stdout prints
    are captured, and the process-wide default HTTPS context it replaces with
    an unverified one is put back, so TLS verification stays ours.
    """
    agora_logger = logging.getLogger("agora")
    saved = (agora_logger.propagate, agora_logger.level, list(agora_logger.handlers))
    saved_https_context = ssl._create_default_https_context
    capture = _Capture()
    agora_logger.handlers = [capture]
    agora_logger.propagate = False
    agora_logger.setLevel(logging.DEBUG)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            yield capture, stdout
    finally:
        ssl._create_default_https_context = saved_https_context
        # Import-time noise (paths logged at ERROR) went to the capture;
        # later SDK logs follow the user's logging setup again.
        agora_logger.propagate, agora_logger.handlers = saved[0], saved[2]
        agora_logger.setLevel(saved[1])


def load_agora_sdk(*, system: str | None = None, machine: str | None = None) -> AgoraSdk:
    """Pre-flight, then import the Agora SDK modules the transport needs.

    Call it once at ``recorder join`` start, not mid-meeting. A failed import
    leaves no half-imported ``agora`` modules behind.

    Args:
        system: ``sys.platform`` for the pre-flight (tests); defaults to this one.
        machine: ``platform.machine()`` for the pre-flight (tests).

    Returns:
        The imported modules.

    Raises:
        TransportUnavailable: the SDK is missing, incomplete, or failed to import
            in any way (ImportError, OSError/URLError, AttributeError,
            SystemExit, or anything else it raises).
    """
    install = locate_agora_sdk(system=system, machine=machine)
    before = set(sys.modules)
    modules: dict[str, types.ModuleType] = {}
    capture: _Capture | None = None
    stdout: io.StringIO | None = None
    failure: BaseException | None = None
    try:
        with _contained_import() as (capture, stdout):
            for attribute, name in AGORA_MODULES.items():
                modules[attribute] = importlib.import_module(name)
    except SystemExit as exc:  # the SDK calls sys.exit(1) when its library fails to load
        failure = exc
        reason = f"the Agora SDK gave up loading its native library (exit code {exc.code})"
    except OSError as exc:  # includes URLError: it tried to download
        failure = exc
        reason = f"the Agora native library could not be loaded or fetched ({exc})"
    except ImportError as exc:
        failure = exc
        reason = f"the Agora SDK could not be imported ({exc})"
    except AttributeError as exc:  # a native library of the wrong version
        failure = exc
        reason = f"the Agora native library does not match the SDK ({exc})"
    except Exception as exc:  # foreign code: whatever else it raises is still "unavailable"
        failure = exc
        reason = f"importing the Agora SDK failed ({type(exc).__name__}: {exc})"
    finally:
        for line in capture.lines if capture else ():
            logger.debug("agora import log: %s", line)
        if stdout is not None and stdout.getvalue().strip():
            logger.debug("agora import stdout: %s", stdout.getvalue().strip())
    if failure is not None:
        for name in set(sys.modules) - before:
            if name == "agora" or name.startswith("agora."):
                del sys.modules[name]
        raise _unavailable(reason) from failure
    logger.debug("= agora sdk loaded from %s", install.package_dir)
    return AgoraSdk(install=install, **modules)
