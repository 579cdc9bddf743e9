"""The stand-in's own fixture: clear reasons when it cannot run, and a build that catches drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from agora_standin import plugin
from agora_standin.wrapper import Unavailable, WrapperSite, _build, _compiler, _fetch_sdist


def test_no_compiler_is_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(Unavailable, match="no C compiler"):
        _compiler()


def test_no_package_index_is_a_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = http://127.0.0.1:9/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(Unavailable, match="pip could not download agora-python-server-sdk"):
        _fetch_sdist(tmp_path)


def test_required_turns_the_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "REQUIRE_WRAPPER", False)
    with pytest.raises(pytest.skip.Exception, match="no network"):
        plugin.require_wrapper("no network")
    monkeypatch.setattr(plugin, "REQUIRE_WRAPPER", True)
    with pytest.raises(pytest.fail.Exception, match="RECORDER_REQUIRE_AGORA_WRAPPER=1 but no cc"):
        plugin.require_wrapper("no cc")


def test_a_changed_structure_layout_fails_the_build(
    agora_wrapper_site: WrapperSite, tmp_path: Path
) -> None:
    # A future sdist that moves a field the stand-in relies on must not build.
    package = tmp_path / "agora"
    shutil.copytree(agora_wrapper_site.package, package)
    data = package / "rtc" / "_ctypes_handle" / "_ctypes_data.py"
    text = data.read_text(encoding="utf-8")
    old = "class AudioFrameInner(ctypes.Structure):\n    _fields_ = [\n"
    assert old in text
    new = old + '        ("extra", ctypes.c_int64),\n'  # every field after it moves
    data.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(Unavailable, match="AudioFrameInner"):
        _build(tmp_path / "cache", package)
