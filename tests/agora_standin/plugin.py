"""Pytest fixtures: the Agora backends behind one test-control API.

``world`` runs a test twice: on the Python fake (``tests/fake_agora``) and on
the SDK's real Python wrapper over the native stand-in (``native``). The
native case needs the pinned sdist (downloaded once, then cached) and a C
compiler; without them it skips with the reason, unless
``RECORDER_REQUIRE_AGORA_WRAPPER=1`` (CI), which makes it fail.

After each native test the fixture releases the process's AgoraService, and
fails the test if the stand-in saw a call it does not model or a bad or
released handle (strict mode), or if the wrapper's import ever reached its
``rm -rf`` or download.
"""

from __future__ import annotations

import importlib
import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agora_standin.control import NativeControl
from agora_standin.wrapper import Unavailable, WrapperSite, prepare_site
from fake_agora import installed_fake_agora, purge_agora_modules
from fake_agora.control import FakeControl

__all__ = ["agora_wrapper_site", "native_world", "require_wrapper", "world", "wrapper_harm"]

# Read at import, before the autouse fixture clears RECORDER_* for every test.
REQUIRE_WRAPPER = os.environ.get("RECORDER_REQUIRE_AGORA_WRAPPER", "") == "1"


def require_wrapper(reason: str) -> None:
    """Skip with ``reason``, or fail when the wrapper is required (CI)."""
    if REQUIRE_WRAPPER:
        pytest.fail(f"RECORDER_REQUIRE_AGORA_WRAPPER=1 but {reason}")
    pytest.skip(reason)


def build_site(root: Path) -> WrapperSite:
    """A fresh wrapper site in ``root`` (the sdist and the build come from the cache)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        return prepare_site(root)
    except Unavailable as exc:
        require_wrapper(f"the Agora wrapper on the native stand-in is unavailable: {exc}")
        raise  # not reached: require_wrapper raises


def wrapper_harm(audit: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """What the wrapper's import does on a mismatch: ``rm -rf agora_sdk``, a download from Agora."""
    harm = []
    for event, args in audit:
        if event == "os.system" and "rm -rf" in str(args[0]):
            harm.append(f"os.system({args[0]!r})")
        elif event == "urllib.Request" and "download.agora.io" in str(args[0]):
            harm.append(f"download {args[0]}")
    return harm


@pytest.fixture(scope="session")
def agora_wrapper_site(tmp_path_factory: pytest.TempPathFactory) -> WrapperSite:
    """The real wrapper and the stand-in, laid out once per session."""
    return build_site(tmp_path_factory.mktemp("agora-wrapper"))


@pytest.fixture
def native_world(agora_wrapper_site: WrapperSite) -> Iterator[NativeControl]:
    """The real wrapper importable as ``agora``, on a freshly reset stand-in."""
    site = agora_wrapper_site
    purge_agora_modules()
    sys.path.insert(0, str(site.root))
    importlib.invalidate_caches()
    https_context = ssl._create_default_https_context
    control = NativeControl(str(site.library))
    try:
        yield control
    finally:
        from recorder.transport.agora.service import release_agora_service

        release_agora_service()
        problems = control.problems()
        harm = wrapper_harm(control.audit)
        library_intact = site.library.is_file()
        control.close()
        sys.path.remove(str(site.root))
        purge_agora_modules()
        importlib.invalidate_caches()
        ssl._create_default_https_context = https_context
        if problems:
            pytest.fail("the Agora stand-in (strict mode) saw: " + "; ".join(problems))
        if harm or not library_intact:
            pytest.fail(f"the wrapper's import tried to delete or download its library: {harm}")


@pytest.fixture(params=["fake", "native", "native-py"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The Agora backend under test, through one control API (``fake_agora.control``).

    ``native`` takes the frames through the native tap (required where the
    wrapper is), ``native-py`` through the wrapper's Python frame observer.
    """
    if request.param == "native":
        from recorder.transport.agora.tap import load_tap

        if load_tap() is None:
            require_wrapper("the native audio tap is not built (python hatch_build.py builds it)")
        yield request.getfixturevalue("native_world")
        return
    if request.param == "native-py":
        from recorder.transport.agora.tap import TAP_ENV

        monkeypatch.setenv(TAP_ENV, "python")
        yield request.getfixturevalue("native_world")
        return
    with installed_fake_agora(tmp_path) as fake:
        fake.sdk_prints = False
        fake.compute_levels = False
        control = FakeControl(fake)
        try:
            yield control
        finally:
            from recorder.transport.agora.service import release_agora_service

            release_agora_service()
