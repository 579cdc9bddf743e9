"""Obtain the real Agora wrapper (pinned sdist), build the stand-in, lay out a site to import.

Nothing from the SDK is in the repository: the sdist is fetched with pip at
test time, checked against its sha256, and only its ``agora/`` package is
unpacked (its ``setup.py`` is never run by us; pip's own metadata step loads it
in pip's isolated build environment but never runs its install command, the
one that downloads Agora's native library). Everything lands in a cache
directory: ``RECORDER_TEST_CACHE_DIR``, else ``$XDG_CACHE_HOME/recorder-tests``,
else ``~/.cache/recorder-tests``. Builds are keyed by the hash of their inputs,
written under a temporary name and renamed, under a file lock, so concurrent
test runs share the cache safely.

The site a test imports from holds ``agora/`` (a fresh copy of the unpacked
package), ``agora/agora_sdk/libagora_rtc_sdk.so`` (the stand-in),
``agora/agora_sdk/libaosl.so`` (an empty shared object: the wrapper loads it
and uses nothing from it; an empty *file* would not load), the same two as
``agora.rtm``'s libraries and ``agora/version.txt`` holding this platform's
download URL exactly as the wrapper's installer writes it (no newline), so the
wrapper's import-time check passes and it neither deletes nor downloads
anything (docs/providers.md, "Agora: the stand-in").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SDIST_NAME",
    "SDIST_SHA256",
    "SDK_VERSION",
    "Unavailable",
    "WrapperSite",
    "cache_dir",
    "platform_download_url",
    "prepare_site",
]

SDK_VERSION = "2.4.10"
SDIST_NAME = f"agora_python_server_sdk-{SDK_VERSION}.tar.gz"
SDIST_SHA256 = "f02cae825be2986435ef5b9a0ab3de30eaa9bf692a9be37a3f5f90fe338788cd"
HERE = Path(__file__).resolve().parent
# The model: a private header, the world and its native threads, the SDK entry points,
# the test-control exports.
_MODEL_SOURCES = [
    HERE / name for name in ("standin.h", "standin_core.c", "standin_sdk.c", "standin_control.c")
]
_C_FILES = [p.name for p in _MODEL_SOURCES if p.suffix == ".c"]
# Read at import, before the tests' autouse fixture clears RECORDER_* variables.
_CACHE_OVERRIDE = os.environ.get("RECORDER_TEST_CACHE_DIR", "")


class Unavailable(Exception):
    """The wrapper or the stand-in cannot be had here; the message says why and what to do."""


def cache_dir() -> Path:
    """Where downloads and builds are kept between runs."""
    if _CACHE_OVERRIDE:
        return Path(_CACHE_OVERRIDE)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recorder-tests"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch_sdist(root: Path) -> Path:
    """The pinned sdist, downloaded once with pip and checked against its hash."""
    target = root / SDIST_NAME
    if target.is_file() and _sha256(target) == SDIST_SHA256:
        return target
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            f"agora-python-server-sdk=={SDK_VERSION}",
            "-d",
            tmp,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"could not run pip to fetch the Agora wrapper ({exc})") from exc
        fetched = Path(tmp) / SDIST_NAME
        if done.returncode != 0 or not fetched.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(
                f"pip could not download agora-python-server-sdk=={SDK_VERSION} ({last}); "
                "connect to the package index once, the sdist is cached afterwards"
            )
        digest = _sha256(fetched)
        if digest != SDIST_SHA256:
            raise Unavailable(
                f"the downloaded {SDIST_NAME} has sha256 {digest}, not the pinned {SDIST_SHA256}; "
                "refusing to use it"
            )
        os.replace(fetched, target)
    return target


def _unpack(root: Path, sdist: Path) -> Path:
    """The sdist's ``agora/`` package only, unpacked once (never its setup.py)."""
    target = root / f"agora-{SDK_VERSION}-{SDIST_SHA256[:12]}"
    if (target / "agora" / "__init__.py").is_file():
        return target / "agora"
    prefix = f"agora_python_server_sdk-{SDK_VERSION}/agora/"
    staging = Path(tempfile.mkdtemp(dir=root))
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
            for member in members:
                relative = Path("agora") / member.name[len(prefix) :]
                if ".." in relative.parts:
                    raise Unavailable(f"{SDIST_NAME} holds an unsafe path {member.name!r}")
                source = archive.extractfile(member)
                assert source is not None
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                (staging / relative).write_bytes(source.read())
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "agora"


def _compiler() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise Unavailable("no C compiler (cc) to build the Agora stand-in; install gcc or clang")


def _build(root: Path, package: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Generate the declarations, then compile the stand-in and libaosl (cached by input hash)."""
    sources = [*_MODEL_SOURCES, HERE / "generate.py", HERE / "wrapper.py"]
    key = hashlib.sha256()
    for source in sources:
        key.update(source.read_bytes())
    key.update(SDIST_SHA256.encode())
    key.update(platform.machine().encode())
    out = root / f"standin-{key.hexdigest()[:16]}"
    library, aosl, meta_path = (
        out / "libagora_rtc_sdk.so",
        out / "libaosl.so",
        out / "bindings.json",
    )
    if library.is_file() and aosl.is_file() and meta_path.is_file():
        return library, aosl, json.loads(meta_path.read_text(encoding="utf-8"))
    cc = _compiler()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    try:
        generated = subprocess.run(
            [
                sys.executable,
                str(HERE / "generate.py"),
                str(package),
                str(staging / "standin_gen.h"),
                str(staging / "bindings.json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if generated.returncode != 0:
            raise Unavailable(f"generating the stand-in declarations failed:\n{generated.stderr}")
        meta = json.loads((staging / "bindings.json").read_text(encoding="utf-8"))
        modelled = "\n".join(p.read_text(encoding="utf-8") for p in _MODEL_SOURCES)
        stubs = ["#include <stddef.h>", '#include "standin_gen.h"', ""]
        stubs.append("void standin_unmodelled(const char *name);")
        for binding in meta["bindings"]:
            name = binding["name"]
            if f" {name}(" in modelled:
                continue
            value = "" if binding["returns"] == "void" else " 0"
            ret = "" if binding["returns"] == "void" else "\n    return" + value + ";"
            stubs.append(
                f'__attribute__((weak, visibility("default"))) {binding["definition"]} {{\n'
                f'    standin_unmodelled("{name}");{ret}\n}}'
            )
        (staging / "stubs.c").write_text("\n".join(stubs) + "\n", encoding="utf-8")
        for source in _MODEL_SOURCES:
            shutil.copy(source, staging / source.name)
        (staging / "aosl.c").write_text("/* Loaded by the wrapper; nothing is used. */\n")
        flags = ["-shared", "-fPIC", "-pthread", "-O2", "-Wall", "-Werror", "-std=gnu11"]
        for output, inputs in (
            ("libagora_rtc_sdk.so", [*_C_FILES, "stubs.c"]),
            ("libaosl.so", ["aosl.c"]),
        ):
            compiled = subprocess.run(
                [cc, *flags, "-o", output, *inputs],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if compiled.returncode != 0:
                raise Unavailable(f"building the Agora stand-in failed:\n{compiled.stderr}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return library, aosl, meta


def platform_download_url(init_file: Path) -> str:
    """The URL the wrapper's ``__init__`` compares ``version.txt`` with, on this platform.

    Read with the recorder's own pre-flight logic (the same function doctor uses).
    """
    from recorder.transport.agora.preflight import expected_version_url

    url = expected_version_url(init_file.read_text(encoding="utf-8"))
    if url is None:
        raise Unavailable(f"cannot tell which download URL {init_file} expects on this platform")
    return url


@dataclass(frozen=True)
class WrapperSite:
    """A directory to put on ``sys.path``: the real wrapper on the stand-in library.

    Attributes:
        root: the directory holding ``agora/``.
        package: ``root / "agora"``.
        library: the stand-in inside it (``agora_sdk/libagora_rtc_sdk.so``).
        bindings: every function the wrapper binds (from the generator).
        url: what ``version.txt`` holds.
    """

    root: Path
    package: Path
    library: Path
    bindings: list[dict[str, Any]]
    url: str


def prepare_site(site_root: Path) -> WrapperSite:
    """Fetch, unpack, build (all cached) and lay out a fresh site in ``site_root``.

    Raises:
        Unavailable: no network for the first download, no C compiler, a bad hash.
    """
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"the Agora stand-in is built for Linux only, not {sys.platform}")
    root = cache_dir()
    with _locked(root):
        sdist = _fetch_sdist(root)
        package = _unpack(root, sdist)
        library, aosl, meta = _build(root, package)
    target = site_root / "agora"
    shutil.copytree(package, target)
    (target / "agora_sdk").mkdir()
    installed = target / "agora_sdk" / "libagora_rtc_sdk.so"
    shutil.copy(library, installed)
    shutil.copy(aosl, target / "agora_sdk" / "libaosl.so")
    # The RTM functions are exported by the stand-in too; agora.rtm loads these two.
    shutil.copy(library, target / "agora_sdk" / "libagora_rtm_sdk_c.so")
    shutil.copy(aosl, target / "agora_sdk" / "libagora_rtm_sdk.so")
    url = platform_download_url(target / "__init__.py")
    # Exactly what the wrapper's installer writes: f.write(url), no newline.
    (target / "version.txt").write_text(url, encoding="utf-8")
    return WrapperSite(site_root, target, installed, meta["bindings"], url)
