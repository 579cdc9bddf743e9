"""Generate the stand-in's C declarations from the wrapper's own ctypes objects.

Run as a script in a child process (it fills ``sys.modules`` with stubs)::

    python generate.py AGORA_PACKAGE_DIR OUT_HEADER OUT_JSON

The wrapper's ``agora`` and ``agora.rtc``/``agora.rtm`` package ``__init__``
files are NOT executed (they would download and load libraries): stub package
modules stand in for them, whose ``agora_lib``/``rtm_lib`` record every symbol
the wrapper binds, with the ``restype`` and ``argtypes`` it assigns. Every
other module of the wrapper is imported as it is. From what was recorded and
from every ``ctypes.Structure`` and ``CFUNCTYPE`` type the modules define, this
writes:

* a C header: the structures (in the layout ctypes computes, with
  ``_Static_assert`` on every size and field offset, so a C compiler that lays
  a structure out differently from ctypes fails the build), the callback
  function-pointer types, and a prototype of every bound function;
* a JSON file: the bindings (name, library, C prototype) for the stub
  stub generator in ``wrapper.py`` and for tests.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

# The wrapper's dead module (its own import fails in 2.4.10); everything else is imported.
_SKIPPED_MODULES = {"agora.rtc.audio_sessionctrl"}

_ENTRY_MODULES = ("agora.rtc.agora_base", "agora.rtc.agora_service", "agora.rtc.rtc_connection")

_SIMPLE = {
    "i": "int",
    "I": "unsigned int",
    "l": "long",
    "L": "unsigned long",
    "q": "long long",
    "Q": "unsigned long long",
    "h": "short",
    "H": "unsigned short",
    "b": "signed char",
    "B": "unsigned char",
    "c": "char",
    "?": "_Bool",
    "d": "double",
    "f": "float",
    "z": "const char*",
    "P": "void*",
}


class Binding:
    """One ``agora_lib.<name>`` attribute: records what the wrapper assigns to it."""

    def __init__(self, name: str, library: str) -> None:
        self.name = name
        self.library = library
        self.restype: Any = ctypes.c_int  # ctypes' default
        self.argtypes: Any = None
        self.modules: set[str] = set()


class RecordingLibrary:
    """Stands for a ``ctypes.CDLL``: any attribute is a :class:`Binding`, one per name."""

    def __init__(self, library: str, bindings: dict[str, Binding]) -> None:
        self._library = library
        self._bindings = bindings

    def __getattr__(self, name: str) -> Binding:
        if name.startswith("__"):
            raise AttributeError(name)
        binding = self._bindings.get(name)
        if binding is None:
            binding = self._bindings[name] = Binding(name, self._library)
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        binding.modules.add(caller)
        return binding


def _stub_packages(package_dir: Path, bindings: dict[str, Binding]) -> None:
    root = types.ModuleType("agora")
    root.__path__ = [str(package_dir)]
    library_dir = str(package_dir / "agora_sdk")
    values = {
        "sdk_library_dir": library_dir,
        "sdk_root_dir": str(package_dir),
        "sdk_rtc_dir": str(package_dir / "rtc"),
        "sdk_rtm_dir": str(package_dir / "rtm"),
    }
    vars(root).update(values)
    sys.modules["agora"] = root
    for leaf, attribute, library in (("rtc", "agora_lib", "rtc"), ("rtm", "rtm_lib", "rtm")):
        module = types.ModuleType(f"agora.{leaf}")
        module.__path__ = [str(package_dir / leaf)]
        vars(module).update(values)
        setattr(module, attribute, RecordingLibrary(library, bindings))
        module.lib_dir = library_dir
        sys.modules[f"agora.{leaf}"] = module
        setattr(root, leaf, module)


def _import_all(package_dir: Path) -> list[types.ModuleType]:
    # Entry points first, the way the wrapper is used (its modules import each other
    # in cycles that only resolve from these ends), then every other module.
    modules = [importlib.import_module(name) for name in _ENTRY_MODULES]
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            continue
        name = ".".join(parts)
        if name in _SKIPPED_MODULES or len(parts) < 3:
            continue
        modules.append(importlib.import_module(name))
    return modules


class Emitter:
    """Turns ctypes types into C declarations."""

    def __init__(self) -> None:
        self.struct_names: dict[type, str] = {}
        self.fn_names: dict[type, str] = {}
        self.struct_order: list[type] = []
        self.fn_order: list[type] = []
        self._visiting: set[type] = set()

    def name_struct(self, cls: type, preferred: str) -> str:
        if cls not in self.struct_names:
            taken = set(self.struct_names.values())
            name = preferred
            if name in taken:
                name = f"{preferred}__{cls.__module__.rsplit('.', 1)[-1].strip('_')}"
            self.struct_names[cls] = name
        return self.struct_names[cls]

    def name_fn(self, cls: type, preferred: str | None) -> str:
        if cls not in self.fn_names:
            taken = set(self.fn_names.values())
            name = preferred or f"standin_fn_{len(self.fn_names)}"
            if name in taken:
                name = f"{name}__{len(self.fn_names)}"
            self.fn_names[cls] = name
        return self.fn_names[cls]

    def is_fn(self, t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, ctypes._CFuncPtr)  # type: ignore[attr-defined]

    def is_struct(self, t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, ctypes.Structure | ctypes.Union)

    def buildable(self, t: Any) -> bool:
        """Whether ``t`` is a ctypes type (a dataclass restype is not)."""
        if t is None:
            return True
        return isinstance(t, type) and issubclass(
            t,
            ctypes._SimpleCData
            | ctypes._Pointer
            | ctypes.Structure
            | ctypes.Union
            | ctypes.Array
            | ctypes._CFuncPtr,
        )  # type: ignore[attr-defined]  # noqa: E501

    def visit(self, t: Any) -> None:
        """Register ``t`` and what it needs, dependencies first."""
        if t is None or not isinstance(t, type):
            return
        if self.is_struct(t):
            if t in self._visiting or t in self.struct_order:
                return
            self.name_struct(t, t.__name__)
            self._visiting.add(t)
            for field in t._fields_:
                self.visit(field[1])
            self._visiting.discard(t)
            self.struct_order.append(t)
        elif self.is_fn(t):
            if t in self.fn_order:
                return
            self.name_fn(t, None)
            if self.buildable(t._restype_) and all(self.buildable(a) for a in t._argtypes_):
                self.visit(t._restype_)
                for a in t._argtypes_:
                    self.visit(a)
            self.fn_order.append(t)
        elif issubclass(t, ctypes._Pointer):  # type: ignore[attr-defined]
            target = t._type_
            if self.is_struct(target):
                self.name_struct(target, target.__name__)
                if target not in self.struct_order and target not in self._visiting:
                    self.visit(target)
            else:
                self.visit(target)
        elif issubclass(t, ctypes.Array):
            self.visit(t._type_)

    def ctype(self, t: Any, name: str = "") -> str:
        """A C declaration of ``name`` (or an abstract one) with type ``t``."""
        sep = " " if name else ""
        if t is None:
            return f"void{sep}{name}"
        if self.is_struct(t):
            return f"struct {self.struct_names[t]}{sep}{name}"
        if self.is_fn(t):
            return f"{self.fn_names[t]}{sep}{name}"
        if issubclass(t, ctypes._Pointer):  # type: ignore[attr-defined]
            target = t._type_
            return self.ctype(target, f"*{name}")
        if issubclass(t, ctypes.Array):
            return self.ctype(t._type_, f"{name}[{t._length_}]")
        code = getattr(t, "_type_", None)
        if isinstance(code, str) and code in _SIMPLE:
            return f"{_SIMPLE[code]}{sep}{name}"
        raise TypeError(f"no C type for {t!r}")

    def fn_typedef(self, t: type) -> str:
        name = self.fn_names[t]
        if not (self.buildable(t._restype_) and all(self.buildable(a) for a in t._argtypes_)):
            # ctypes made the type but can never call through it (a dataclass restype):
            # the slot is a plain pointer the wrapper always leaves NULL.
            return f"typedef void* {name}; /* not callable from ctypes */"
        args = ", ".join(self.ctype(a) for a in t._argtypes_) or "void"
        return f"typedef {self.ctype(t._restype_, f'(*{name})({args})')};"

    def struct_definition(self, t: type) -> str:
        name = self.struct_names[t]
        keyword = "union" if issubclass(t, ctypes.Union) else "struct"
        lines = [f"{keyword} {name} {{"]
        seen: dict[str, int] = {}
        for field in t._fields_:
            fname, ftype = field[0], field[1]
            count = seen.get(fname, 0)
            seen[fname] = count + 1
            cname = fname if count == 0 else f"{fname}__{count + 1}"
            if len(field) > 2:
                lines.append(f"    {self.ctype(ftype, cname)} : {field[2]};")
            else:
                lines.append(f"    {self.ctype(ftype, cname)};")
        lines.append("};")
        if keyword == "union":
            lines[0] = f"union {name} {{"
        return "\n".join(lines)

    def struct_asserts(self, t: type) -> list[str]:
        name = self.struct_names[t]
        out = [
            f"_Static_assert(sizeof(struct {name}) == {ctypes.sizeof(t)}, "
            f'"{name}: size differs from ctypes");'
        ]
        counts: dict[str, int] = {}
        for field in t._fields_:
            counts[field[0]] = counts.get(field[0], 0) + 1
        seen: dict[str, int] = {}
        for field in t._fields_:
            fname = field[0]
            seen[fname] = seen.get(fname, 0) + 1
            if len(field) > 2:
                continue
            # A repeated name: ctypes' descriptor is the last one's.
            if seen[fname] != counts[fname]:
                continue
            cname = fname if seen[fname] == 1 else f"{fname}__{seen[fname]}"
            offset = getattr(t, fname).offset
            out.append(
                f"_Static_assert(offsetof(struct {name}, {cname}) == {offset}, "
                f'"{name}.{fname}: offset differs from ctypes");'
            )
        return out


def generate(package_dir: Path) -> tuple[str, dict[str, Any]]:
    bindings: dict[str, Binding] = {}
    _stub_packages(package_dir, bindings)
    modules = _import_all(package_dir)
    emitter = Emitter()
    # Names the wrapper gives its types (first module wins), for readable C.
    for module in modules:
        for attr, value in vars(module).items():
            if emitter.is_fn(value) and value not in emitter.fn_names and attr.isupper():
                emitter.name_fn(value, attr)
    for module in modules:
        for value in list(vars(module).values()):
            if emitter.is_struct(value) and value.__module__ == module.__name__:
                emitter.visit(value)
            elif emitter.is_fn(value):
                emitter.visit(value)
    real = {name: b for name, b in bindings.items() if isinstance(b, Binding)}
    for binding in real.values():
        emitter.visit(binding.restype)
        for a in binding.argtypes or ():
            emitter.visit(a)
    out = [
        "/* Generated by tests/agora_standin/generate.py from the wrapper's ctypes objects. */",
        "#pragma once",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
    ]
    out += [f"struct {emitter.struct_names[t]};" for t in emitter.struct_order]
    out.append("")
    # Function-pointer typedefs may name structs by pointer only (declared above),
    # but structs hold function pointers by value: typedefs come first.
    out += [emitter.fn_typedef(t) for t in emitter.fn_order]
    out.append("")
    for t in emitter.struct_order:
        out.append(emitter.struct_definition(t))
        out += emitter.struct_asserts(t)
        out.append("")
    prototypes: dict[str, str] = {}
    heads: dict[str, str] = {}
    for name in sorted(real):
        binding = real[name]
        args = ", ".join(emitter.ctype(a) for a in binding.argtypes or ()) or "void"
        proto = f"{emitter.ctype(binding.restype, name)}({args})"
        prototypes[name] = proto
        named = ", ".join(emitter.ctype(a, f"a{i}") for i, a in enumerate(binding.argtypes or ()))
        heads[name] = emitter.ctype(binding.restype, f"{name}({named or 'void'})")
        out.append(f"{proto};")
    meta = {
        "bindings": [
            {
                "name": name,
                "library": real[name].library,
                "prototype": prototypes[name],
                "definition": heads[name],
                "returns": emitter.ctype(real[name].restype),
                "argc": len(real[name].argtypes or ()),
                "modules": sorted(real[name].modules),
            }
            for name in sorted(real)
        ],
        "structs": {
            emitter.struct_names[t]: {
                "size": ctypes.sizeof(t),
                "fields": [f[0] for f in t._fields_],
            }
            for t in emitter.struct_order
        },
    }
    return "\n".join(out) + "\n", meta


def main(argv: list[str]) -> int:
    package_dir, header, meta_path = Path(argv[1]), Path(argv[2]), Path(argv[3])
    text, meta = generate(package_dir)
    header.write_text(text, encoding="utf-8")
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
