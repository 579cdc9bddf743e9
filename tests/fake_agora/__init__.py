"""A fake agora-python-server-sdk for tests, put on sys.path as ``agora`` only on request.

The fake's source lives in ``sdk/`` (not named ``agora``, so nothing imports it
as the SDK by accident). :func:`installed_fake_agora` builds a temporary
directory holding ``agora/`` (links to ``sdk/``'s files plus the native-library
placeholder files and ``version.txt`` the pre-flight looks for), prepends it to
``sys.path``, and on exit stops the fake's native thread, removes the path and
purges every ``agora`` module, so each use starts from a fresh world.

Usage in a test module::

    @pytest.fixture
    def world(tmp_path):
        with installed_fake_agora(tmp_path) as world:
            yield world
"""

from __future__ import annotations

import contextlib
import importlib
import platform
import sys
import types
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "SDK_SOURCE",
    "SURFACE_PATH",
    "installed_fake_agora",
    "native_placeholder",
    "purge_agora_modules",
]

HERE = Path(__file__).resolve().parent
SDK_SOURCE = HERE / "sdk"
SURFACE_PATH = HERE / "agora-sdk-surface.json"
# What the real install leaves next to the package (docs/providers.md, "Agora: loading the SDK").
NATIVE_FILES = ("libagora_rtc_sdk.so", "libaosl.so", "libAgoraRtcKit.dylib")


def purge_agora_modules() -> None:
    """Forget every imported ``agora`` module (real or fake)."""
    for name in list(sys.modules):
        if name == "agora" or name.startswith("agora."):
            del sys.modules[name]


def native_placeholder(name: str) -> bytes:
    """A file the pre-flight takes for a loadable library of this machine (never loaded).

    An ELF header for this processor (or a Mach-O magic for a ``.dylib``): the
    pre-flight reads library headers because the real wrapper cannot load an
    empty file (docs/providers.md, "Agora: the stand-in").
    """
    if name.endswith(".dylib"):
        return b"\xcf\xfa\xed\xfe" + bytes(60)
    machines = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}
    machine = machines.get(platform.machine().lower(), 62)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    return header + (3).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)


def _materialise(root: Path) -> Path:
    package = root / "agora"
    package.mkdir(parents=True)
    for entry in SDK_SOURCE.iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (package / "agora_sdk").mkdir()
    for name in NATIVE_FILES:
        (package / "agora_sdk" / name).write_bytes(native_placeholder(name))
    init = (SDK_SOURCE / "__init__.py").read_text(encoding="utf-8")
    url = init.split('FAKE_DOWNLOAD_URL = "', 1)[1].split('"', 1)[0]
    # What the SDK's installer writes: the URL, no newline (compared byte for byte).
    (package / "version.txt").write_text(url, encoding="utf-8")
    return package


@contextlib.contextmanager
def installed_fake_agora(tmp_dir: Path) -> Iterator[types.ModuleType]:
    """Make ``import agora`` load the fake for the duration of the block.

    Args:
        tmp_dir: an empty temporary directory to build the ``agora/`` tree in.

    Yields:
        The ``agora.fake_control`` module's ``world`` object (the test-control API).
    """
    root = Path(tmp_dir) / "fake-agora-site"
    _materialise(root)
    purge_agora_modules()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    control = importlib.import_module("agora.fake_control")
    try:
        yield control.world
    finally:
        try:
            control.world.shutdown()
        finally:
            sys.path.remove(str(root))
            purge_agora_modules()
            importlib.invalidate_caches()
