"""Compare the loaded fake SDK with agora-sdk-surface.json (the real wrapper's surface).

The JSON was made by shared/tools/agora_surface.py, which parses the real SDK
with ``ast``. Here the fake is imported and walked at run time (classes, enum
members, dataclass options and fields, method signatures with evaluated
defaults) and its class sources are parsed with ``ast`` for ``self.x = ...``
instance attributes, the same way the tool records them.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import textwrap
import types
from typing import Any

__all__ = ["NOT_REPRODUCED", "REPRODUCED_MODULES", "compare_surface"]

# Modules of the real agora.rtc package the fake reproduces.
REPRODUCED_MODULES = {
    "agora.rtc",
    "agora.rtc.agora_base",
    "agora.rtc.agora_service",
    "agora.rtc.audio_frame_observer",
    "agora.rtc.audio_pcm_data_sender",
    "agora.rtc.local_audio_track",
    "agora.rtc.local_user",
    "agora.rtc.local_user_observer",
    "agora.rtc.media_node_factory",
    "agora.rtc.remote_audio_track",
    "agora.rtc.rtc_connection",
    "agora.rtc.rtc_connection_observer",
    "agora.rtc.voice_detection",
}

# What is deliberately left out, and why (module, or "module:Class").
NOT_REPRODUCED = {
    "agora.rtc._ctypes_handle": "private ctypes plumbing; the fake calls observers directly",
    "agora.rtc._utils": "private handle maps",
    "agora.rtc.agora_parameter": "low-level parameters; the recorder does not set any",
    "agora.rtc.audio_encoded_frame_sender": "encoded audio; the recorder publishes PCM",
    "agora.rtc.audio_sessionctrl": "dead code in 2.4.10 (its import fails)",
    "agora.rtc.audio_vad_manager": "the SDK's Python VAD; the recorder keeps it off",
    "agora.rtc.external_audio_processor": "APM processing; not used",
    "agora.rtc.local_video_track": "video",
    "agora.rtc.remote_video_track": "video",
    "agora.rtc.utils": "pre-2.3 helpers (AudioConsumer, VAD dumps); not public API now",
    "agora.rtc.video_encoded_frame_observer": "video",
    "agora.rtc.video_encoded_image_sender": "video",
    "agora.rtc.video_frame_observer": "video",
    "agora.rtc.video_frame_sender": "video",
    "agora.rtc.voice_detection:VadDataV2": "the SDK's Python VAD; kept off",
    "agora.rtc.voice_detection:AudioVadV2": "the SDK's Python VAD; kept off",
}

_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}


def _is_excluded(module: str, cls: str | None = None) -> bool:
    if cls is not None and f"{module}:{cls}" in NOT_REPRODUCED:
        return True
    return any(module == key or module.startswith(key + ".") for key in NOT_REPRODUCED)


def _evaluate(text: str, module: types.ModuleType) -> Any:
    namespace = dict(vars(module))
    namespace.setdefault("field", dataclasses.field)
    return eval(text, namespace)  # the JSON's own default expressions, e.g. "5 * 1024"


def _same_value(expected: Any, actual: Any) -> bool:
    return type(expected) is type(actual) and expected == actual


def _compare_dataclass(where: str, spec: dict, cls: type, module: types.ModuleType) -> list[str]:
    diffs = []
    if not dataclasses.is_dataclass(cls):
        return [f"{where}: not a dataclass"]
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    fields = dataclasses.fields(cls)
    options = {"frozen": params.frozen, "kw_only": bool(fields) and all(f.kw_only for f in fields)}
    wanted = {"frozen": False, "kw_only": False, **spec.get("dataclass_options", {})}
    if options != wanted:
        diffs.append(f"{where}: dataclass options {options} != {wanted}")
    names = [f.name for f in fields]
    spec_names = [f["name"] for f in spec.get("fields", [])]
    if names != spec_names:
        return [*diffs, f"{where}: fields {names} != {spec_names}"]
    for f, field_spec in zip(fields, spec["fields"], strict=True):
        if "default" not in field_spec:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                diffs.append(f"{where}.{f.name}: has a default, the SDK has none")
            continue
        expected = _evaluate(field_spec["default"], module)
        if isinstance(expected, dataclasses.Field):
            if f.default_factory is not expected.default_factory:
                diffs.append(f"{where}.{f.name}: default_factory differs")
        elif not _same_value(expected, f.default):
            diffs.append(f"{where}.{f.name}: default {f.default!r} != {expected!r}")
    return diffs


def _compare_enum(where: str, spec: dict, cls: type) -> list[str]:
    if not (isinstance(cls, type) and issubclass(cls, enum.IntEnum)):
        return [f"{where}: not an IntEnum"]
    members = [(m.name, m.value) for m in cls]  # type: ignore[var-annotated]
    expected = [(m["name"], m["value"]) for m in spec["enum_members"]]
    return [] if members == expected else [f"{where}: members {members} != {expected}"]


def _compare_method(where: str, spec: dict, cls: type, module: types.ModuleType) -> list[str]:
    function = inspect.getattr_static(cls, spec["name"], None)
    if function is None:
        return [f"{where}: missing"]
    for decorator in spec.get("decorators", []):
        if decorator == "staticmethod" and not isinstance(function, staticmethod):
            return [f"{where}: not a staticmethod"]
        if decorator == "property" and not isinstance(function, property):
            return [f"{where}: not a property"]
    if isinstance(function, property):
        return []
    signature = inspect.signature(getattr(cls, spec["name"]))
    if not isinstance(function, staticmethod):
        actual = list(inspect.signature(function).parameters.values())
    else:
        actual = list(signature.parameters.values())
    diffs = []
    names = [(p.name, p.kind) for p in actual]
    expected = [(p["name"], _KINDS[p["kind"]]) for p in spec["params"]]
    if names != expected:
        return [f"{where}: parameters {names} != {expected}"]
    for param, param_spec in zip(actual, spec["params"], strict=True):
        has = param.default is not inspect.Parameter.empty
        if has != ("default" in param_spec):
            diffs.append(f"{where}({param.name}): default presence differs")
        elif has and not _same_value(_evaluate(param_spec["default"], module), param.default):
            diffs.append(f"{where}({param.name}): default {param.default!r} differs")
    return diffs


def _assigned_attributes(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


def _compare_class(where: str, spec: dict, cls: type, module: types.ModuleType) -> list[str]:
    diffs = []
    spec_methods = {m["name"]: m for m in spec["methods"]}
    for name, method in spec_methods.items():
        if method.get("private") or (name.startswith("__") and name != "__init__"):
            continue
        diffs += _compare_method(f"{where}.{name}", method, cls, module)
    public = {
        name
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    }
    for extra in sorted(public - set(spec_methods)):
        diffs.append(f"{where}.{extra}: not in the SDK")
    wanted_attributes = {a for a in spec.get("instance_attributes", []) if not a.startswith("_")}
    missing = wanted_attributes - _assigned_attributes(cls)
    if missing:
        diffs.append(f"{where}: instance attributes never assigned: {sorted(missing)}")
    return diffs


def compare_surface(surface: dict) -> list[str]:
    """Return every difference between the importable fake ``agora`` and ``surface``."""
    diffs: list[str] = []
    seen_modules = set()
    for module_spec in surface["modules"]:
        name = module_spec["module"]
        if name not in REPRODUCED_MODULES:
            if not _is_excluded(name):
                diffs.append(f"{name}: neither reproduced nor listed in NOT_REPRODUCED")
            continue
        seen_modules.add(name)
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            diffs.append(f"{name}: cannot import the fake ({exc})")
            continue
        spec_classes = {c["name"] for c in module_spec.get("classes", [])}
        for spec in module_spec.get("classes", []):
            where = f"{name}.{spec['name']}"
            if _is_excluded(name, spec["name"]):
                continue
            cls = getattr(module, spec["name"], None)
            if not isinstance(cls, type):
                diffs.append(f"{where}: missing")
            elif spec["kind"] == "enum":
                diffs += _compare_enum(where, spec, cls)
            elif spec["kind"] == "dataclass":
                diffs += _compare_dataclass(where, spec, cls, module)
            else:
                diffs += _compare_class(where, spec, cls, module)
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and not attr.startswith("_")
                and attr not in spec_classes
            ):
                diffs.append(f"{name}.{attr}: class not in the SDK")
        for function in module_spec.get("functions", []):
            if not function.get("private") and not hasattr(module, function["name"]):
                diffs.append(f"{name}.{function['name']}: function missing")
    for name in sorted(REPRODUCED_MODULES - seen_modules):
        diffs.append(f"{name}: reproduced but not in the surface file")
    return diffs
