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
import os
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
    "WOULD_DOWNLOAD",
    "WOULD_EXIT",
    "WOULD_FAIL",
    "WOULD_IMPORT",
    "AgoraSdkInstall",
    "AgoraSdkVerdict",
    "expected_version_url",
    "judge_agora_sdk",
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
# The function in agora/__init__.py that decides at import whether to delete and
# re-download the native library (docs/providers.md, "Agora: the stand-in").
_CHECK_FUNCTION = "_check_download_and_extract_sdk"
# ELF e_machine values of the native builds (the System V gABI), by platform.machine().
_ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}
# The SDK's own logger never logs below this (its DEBUG lines carry tokens).
_SDK_LOG_FLOOR = logging.INFO
_MACH_O_MAGICS = (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca")

#: What importing the SDK would do, as its own import-time code decides.
WOULD_IMPORT, WOULD_DOWNLOAD, WOULD_FAIL, WOULD_EXIT = "import", "download", "fail", "exit"


@dataclass(frozen=True, slots=True)
class AgoraSdkInstall:
    """Where the Agora SDK is installed, as found without importing it.

    Attributes:
        package_dir: the ``agora`` package directory.
        library_dir: its ``agora_sdk`` directory holding the native libraries.
        native_library: the main native library file.
        version: the first line of ``version.txt`` (the download URL it came from).
    """

    package_dir: Path
    library_dir: Path
    native_library: Path
    version: str


@dataclass(frozen=True, slots=True)
class AgoraSdkVerdict:
    """What ``import agora`` would do here, judged the way its own code judges.

    Attributes:
        outcome: ``import`` (it would load), ``download`` (it would delete
            ``agora_sdk/`` and try to download it again), ``fail`` (it would raise
            loading ``libaosl.so``) or ``exit`` (it would call ``sys.exit(1)``).
        reason: what was found, and how to repair it (one line).
        install: where the SDK is (also when it would not import).
    """

    outcome: str
    reason: str
    install: AgoraSdkInstall


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


class _Unknown(Exception):
    """The import-time check uses something this reading does not follow."""


def _evaluate(node: ast.expr, names: dict[str, object], system: str, machine: str) -> object:
    """The value of a (small) expression of the SDK's check function."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _Unknown(node.id)
        return names[node.id]
    if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.platform":
        return system
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        called = ast.unparse(node.func)
        if called == "platform.machine":
            return machine
        if called == "platform.system":
            return {"linux": "Linux", "darwin": "Darwin"}.get(system, system)
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(value, names, system, machine) for value in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand, names, system, machine)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left = _evaluate(node.left, names, system, machine)
        right = _evaluate(node.comparators[0], names, system, machine)
        if isinstance(node.ops[0], ast.Eq):
            return left == right
        if isinstance(node.ops[0], ast.NotEq):
            return left != right
    raise _Unknown(ast.unparse(node))


def _run_assignments(
    body: list[ast.stmt], names: dict[str, object], system: str, machine: str
) -> None:
    """Follow the check function's assignments and ``if`` branches, in order."""
    for statement in body:
        if isinstance(statement, ast.Assign) and all(
            isinstance(target, ast.Name) for target in statement.targets
        ):
            try:
                value = _evaluate(statement.value, names, system, machine)
            except _Unknown:
                value = _UNKNOWN
            for target in statement.targets:
                assert isinstance(target, ast.Name)
                names[target.id] = value
        elif isinstance(statement, ast.If):
            mentions = {n.id for n in ast.walk(statement.test) if isinstance(n, ast.Name)}
            if "version_url" in mentions:
                return  # the comparison itself: url is final here
            branch = _evaluate(statement.test, names, system, machine)
            _run_assignments(statement.body if branch else statement.orelse, names, system, machine)


_UNKNOWN = object()


def expected_version_url(
    init_source: str, *, system: str | None = None, machine: str | None = None
) -> str | None:
    """The download URL ``agora/__init__.py`` compares ``version.txt`` with, on a platform.

    Its check function assigns several URL literals in turn (older ones stay in
    the file), then picks one per platform; this follows those assignments and
    branches as Python would, without running anything.

    Returns:
        The URL, or None when the file is not shaped as this reading expects.
    """
    system = sys.platform if system is None else system
    machine = platform.machine() if machine is None else machine
    try:
        tree = ast.parse(init_source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == _CHECK_FUNCTION:
            names: dict[str, object] = {}
            try:
                _run_assignments(node.body, names, system, machine)
            except _Unknown:
                return None
            url = names.get("url")
            return url if isinstance(url, str) else None
    return None


def _first_line(path: Path) -> str | None:
    """``version.txt``'s first line as the SDK reads it (newline kept); None if absent."""
    if not path.exists():
        return None
    try:
        with path.open(encoding=None) as handle:  # the SDK's open(path, 'r')
            return handle.readline()
    except (OSError, UnicodeDecodeError, ValueError):
        return ""  # the SDK logs the error and compares "" (a mismatch)


def _loadable(path: Path, system: str, machine: str) -> str | None:
    """Why ``path`` cannot be a loadable shared library here, or None if it looks loadable."""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if system == "darwin":
        return None if header[:4] in _MACH_O_MAGICS else "is not a Mach-O library"
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return "is not a shared library (empty or not ELF)"
    if header[4] != 2:
        return "is a 32-bit library"
    expected = _ELF_MACHINES.get(machine.lower())
    found = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    if expected is not None and found != expected:
        return f"is built for another processor (ELF machine {found}, not {expected})"
    return None


def _repair_hint(version_file: Path, url: str) -> str:
    return (
        f"if {version_file.parent / 'agora_sdk'} holds the libraries downloaded from that URL, "
        f"write it back without a newline: printf '%s' '{url}' > '{version_file}'; otherwise "
        "reinstall the SDK"
    )


def judge_agora_sdk(*, system: str | None = None, machine: str | None = None) -> AgoraSdkVerdict:
    """Judge, without importing it, what ``import agora`` would do here.

    The SDK's ``__init__`` keeps its libraries only when ``version.txt``'s raw
    first line (newline included) equals this platform's final download URL
    and the main library exists; otherwise it deletes ``agora_sdk/`` and
    downloads it. It then loads ``libaosl.so`` unguarded (an ``OSError``), and
    ``agora/rtc/__init__.py`` loads the main library or calls ``sys.exit(1)``
    (docs/providers.md, "Agora: loading the SDK" and "Agora: the stand-in").

    Raises:
        TransportUnavailable: the platform is unsupported or the package is missing.
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
    version_file = package_dir / "version.txt"
    line = _first_line(version_file)
    install = AgoraSdkInstall(
        package_dir=package_dir,
        library_dir=library_dir,
        native_library=library_dir / required[0],
        version=(line or "").rstrip("\r\n"),
    )

    def verdict(outcome: str, reason: str) -> AgoraSdkVerdict:
        return AgoraSdkVerdict(outcome, reason, install)

    try:
        url = expected_version_url(
            Path(spec.origin).read_text(encoding="utf-8"), system=system, machine=machine
        )
    except (OSError, UnicodeDecodeError):
        url = None
    download = "importing the SDK now would delete its native library and try to download it"
    if url is None:
        return verdict(
            WOULD_DOWNLOAD,
            f"cannot tell which download URL {spec.origin} expects on {system}/{machine}; "
            f"{download} if version.txt does not match it",
        )
    if not os.path.exists(install.native_library):
        return verdict(
            WOULD_DOWNLOAD,
            f"the Agora native library is missing ({required[0]} not in {library_dir}); {download}",
        )
    if line is None or not line:
        return verdict(
            WOULD_DOWNLOAD,
            f"the Agora native library has no version.txt in {package_dir}; {download}",
        )
    if line != url:
        if line.rstrip("\r\n") == url:
            problem = f"{version_file} ends with a newline, and the SDK compares it byte for byte"
        elif line.startswith("https://"):
            problem = (
                f"{version_file} names {line.strip()}, not the URL this SDK expects on "
                f"{system}/{machine} ({url})"
            )
        else:
            problem = f"{version_file} does not hold this SDK's download URL ({url})"
        return verdict(WOULD_DOWNLOAD, f"{problem}; {download}; {_repair_hint(version_file, url)}")
    for name in required[1:]:
        path = library_dir / name
        why = "is missing" if not path.exists() else _loadable(path, system, machine)
        if why is not None:
            return verdict(
                WOULD_FAIL,
                f"{path} {why}; importing the SDK would fail loading it; reinstall the SDK",
            )
    why = _loadable(install.native_library, system, machine)
    if why is not None:
        return verdict(
            WOULD_EXIT,
            f"{install.native_library} {why}; importing the SDK would exit the process "
            "(sys.exit(1)); reinstall the SDK",
        )
    return verdict(WOULD_IMPORT, f"native library {required[0]} in {library_dir}")


def locate_agora_sdk(*, system: str | None = None, machine: str | None = None) -> AgoraSdkInstall:
    """Find the installed Agora SDK and make sure importing it would do no harm.

    Only :func:`importlib.util.find_spec` on the top-level name is used, which
    does not run ``agora/__init__.py``; see :func:`judge_agora_sdk`.

    Args:
        system: ``sys.platform`` to check for (tests); defaults to this one.
        machine: ``platform.machine()`` to check for (tests); defaults to this one.

    Returns:
        Where the SDK is.

    Raises:
        TransportUnavailable: the platform is unsupported, the package is missing,
            or importing it would download, fail or exit.
    """
    judged = judge_agora_sdk(system=system, machine=machine)
    if judged.outcome != WOULD_IMPORT:
        raise _unavailable(judged.reason)
    return judged.install


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
        # later SDK logs follow the user's logging setup again, but never below
        # INFO: the SDK's callbacks log their arguments at DEBUG, tokens included
        # (on_token_privilege_will_expire), and secrets stay out of logs.
        agora_logger.propagate, agora_logger.handlers = saved[0], saved[2]
        agora_logger.setLevel(max(saved[1], _SDK_LOG_FLOOR))


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
