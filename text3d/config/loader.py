"""Typed configuration: nested dataclasses filled from defaults, YAML presets and ``key=value`` overrides.

A schema is a plain ``@dataclass`` (fields may be nested dataclasses) whose fields have defaults and attribute
docstrings (a string literal on the line after the field), e.g.::

    @dataclass
    class TrainerConfig:
        max_steps: Annotated[int, Range(min=1)] = 1000
        \"\"\"Optimisation steps.\"\"\"

``build(Schema, [load_yaml(path)], ["trainer.max_steps=100"])`` starts from the defaults, merges the layers in
order (mappings merge key by key: sections and ``dict`` fields; every other value is replaced), checks each value
against its field type and returns the instance. Every problem is a one-line :class:`UserError` that names the
dotted key and, where known, where the value came from (a preset file or the command line).

YAML is read with YAML 1.2 scalars (:mod:`text3d.config.yaml12`): only ``true``/``false`` are booleans and ``1e-4``
is a float. Reading preset files: :mod:`text3d.config.files`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from text3d.config.yaml12 import YAMLError, read_yaml, write_yaml, yaml_where
from text3d.errors import UserError

T = TypeVar("T")
_NoneType = type(None)
_MISSING: Any = dataclasses.MISSING
_CLI = "command line"


@dataclass(frozen=True)
class Range:
    """Bounds for an ``int``/``float`` field, or for every number inside a tuple/list/dict field.

    Used as a marker: ``lr: Annotated[float, Range(min=0, min_exclusive=True)] = 1e-2``.
    """

    min: float | None = None
    """Lower bound, or None for none."""
    max: float | None = None
    """Upper bound, or None for none."""
    min_exclusive: bool = False
    """True for ``> min``, False for ``>= min``."""
    max_exclusive: bool = False
    """True for ``< max``, False for ``<= max``."""

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"Range: min {self.min} > max {self.max}")

    def contains(self, x: float) -> bool:
        if math.isnan(x):
            return False  # NaN compares False with everything, so it would pass every bound
        if self.min is not None and (x <= self.min if self.min_exclusive else x < self.min):
            return False
        return self.max is None or (x < self.max if self.max_exclusive else x <= self.max)

    def __str__(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {_bound(self.min)}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_exclusive else '<='} {_bound(self.max)}")
        return " and ".join(parts) or "any number"


def _bound(value: float) -> str:
    # Whole numbers exactly (2**63 - 1 is no 9.22e+18), so that Range(0) and Range(0.0) read the same: typing caches
    # equal Annotated metadata, so either instance may be the one a schema ends up holding.
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**64 else f"{value:g}"


class Layer(dict):
    """A config layer: a plain dict that remembers its source ("preset.yaml") for error messages."""

    def __init__(self, data: Mapping[str, Any] = (), source: str = "") -> None:  # type: ignore[assignment]
        super().__init__(data)
        self.source = source


# Layers stay dumpable with plain yaml.safe_dump (PyYAML only represents exact dicts).
yaml.SafeDumper.add_representer(Layer, yaml.SafeDumper.represent_dict)


# --- Schema introspection ---------------------------------------------------------------------------------------
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _unwrap(tp: Any) -> tuple[Any, tuple[Range, ...]]:
    """``Annotated[X, Range(...)]`` -> ``(X, ranges)``."""
    ranges: tuple[Range, ...] = ()
    while get_origin(tp) is Annotated:
        ranges += tuple(m for m in tp.__metadata__ if isinstance(m, Range))
        tp = tp.__origin__
    return tp, ranges


def _optional_inner(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not _NoneType]
    if len(args) != 1:
        raise TypeError(f"config: only `X | None` unions are supported, not {tp}")
    return args[0]


def _section_class(tp: Any) -> type | None:
    """The dataclass behind a field type (``X``, ``X | None``, annotated or not), else None."""
    tp, _ = _unwrap(tp)
    if _is_union(tp):
        tp, _ = _unwrap(_optional_inner(tp))
    return tp if _is_dataclass_type(tp) else None


def field_range(schema: type, key: str) -> Range:
    """The combined bounds of the numeric field at dotted ``key`` (e.g. for a form's limits or a CLI option)."""
    cls, *parents, name = [schema, *key.split(".")]
    for part in parents:
        cls = _section_class(_fields(cls)[part])
    tp, ranges = _unwrap(_fields(cls)[name])
    if _is_union(tp):
        ranges += _unwrap(_optional_inner(tp))[1]
    lows = [(r.min, r.min_exclusive) for r in ranges if r.min is not None]
    highs = [(r.max, r.max_exclusive) for r in ranges if r.max is not None]
    low, low_x = max(lows) if lows else (None, False)
    high, high_x = min(highs) if highs else (None, False)
    return Range(low, high, low_x, high_x)


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type (``Annotated`` kept) for the fields a config can set (``init=True``)."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as e:  # string annotations naming classes local to a function cannot be resolved
        raise TypeError(f"config: cannot resolve the annotations of {cls.__qualname__}: {e}") from e
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _all_keys(cls: type, prefix: str = "") -> tuple[str, ...]:
    """Every dotted key of a schema (sections included), for "did you mean" hints."""
    keys: list[str] = []
    for name, tp in _fields(cls).items():
        keys.append(prefix + name)
        if (sub := _section_class(tp)) is not None:
            keys += _all_keys(sub, f"{prefix}{name}.")
    return tuple(keys)


def _as_tree(value: Any) -> Any:
    """Dataclass instances (at any depth) -> dicts of their settable fields; the rest unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _as_tree(getattr(value, name)) for name in _fields(type(value))}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_tree(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _as_tree(v) for k, v in value.items()}
    return value


def _default_tree(cls: type) -> dict[str, Any]:
    """The schema's defaults as nested dicts; required fields are absent (reported if still missing at the end)."""
    tree: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            tree[f.name] = _as_tree(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            tree[f.name] = _as_tree(f.default_factory())
        elif _is_dataclass_type(sub := _unwrap(_fields(cls)[f.name])[0]):
            tree[f.name] = _default_tree(sub)  # a section without a default takes its own defaults
    return tree


def _type_name(tp: Any) -> str:
    """Readable type for messages: ``int``, ``[float, float]``, ``{str: float}``, ``one of 'a', 'b'``..."""
    tp, _ = _unwrap(tp)
    origin, args = get_origin(tp), get_args(tp)
    if _is_union(tp):
        return f"{_type_name(_optional_inner(tp))} or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{_type_name(args[0])}, ...]"
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is list:
        return f"[{_type_name(args[0])}, ...]"
    if origin is dict:
        return f"{{{_type_name(args[0])}: {_type_name(args[1])}}}"
    if _is_dataclass_type(tp):
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "path"
    return getattr(tp, "__name__", str(tp))


def _accepts(tp: Any, kind: type) -> bool:
    """Whether a field of type ``tp`` takes strings (``kind=str``; paths count) or None (``kind=NoneType``)."""
    tp, _ = _unwrap(tp)
    if _is_union(tp):
        return any(a is _NoneType if kind is _NoneType else _accepts(a, kind) for a in get_args(tp))
    return kind is str and (tp is str or (isinstance(tp, type) and issubclass(tp, PurePath)))


# --- Checking -----------------------------------------------------------------------------------------------------
def config_error(msg: str) -> UserError:
    """A :class:`UserError` on one line, whatever a key or value in ``msg`` contains."""
    return UserError(" ".join(msg.split()))


def describe_value(value: Any) -> str:
    """A short description of a value for messages: ``null``, ``a mapping``, ``int 42``."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True)
class _Override:
    """A command-line value, parsed only once its field type is known, so that ``name=123`` stays the string '123'."""

    text: str

    def parse(self, tp: Any, path: str) -> Any:
        try:
            value = read_yaml(self.text)
        except YAMLError as e:
            if _accepts(tp, str):
                return self.text
            raise config_error(f"config: cannot parse the value of '{path}' ({_CLI}){yaml_where(e)}") from None
        if _accepts(tp, str) and not isinstance(value, str):
            return None if value is None and self.text.strip() and _accepts(tp, _NoneType) else self.text
        return value


class _Checker:
    """Checks one layer against the schema; ``source`` names the layer in messages."""

    def __init__(self, root: type, source: str) -> None:
        self.root, self.source = root, source

    def fail(self, msg: str) -> UserError:
        return config_error(f"config: {msg} ({self.source})")

    def expected(self, tp: Any, value: Any, path: str) -> UserError:
        return self.fail(f"'{path or '<top level>'}' expects {_type_name(tp)}, got {describe_value(value)}")

    def check(self, tp: Any, value: Any, path: str, ranges: tuple[Range, ...] = ()) -> Any:
        """``value`` converted to ``tp``; sections stay (partial) dicts, instantiated after merging all layers."""
        if isinstance(value, _Override):
            value = value.parse(tp, path)
        tp, more = _unwrap(tp)
        ranges += more
        origin, args = get_origin(tp), get_args(tp)
        if _is_dataclass_type(tp):
            return self.section(tp, value, path)
        if _is_union(tp):
            if value is None and _NoneType in args:
                return None
            if value is None:
                raise self.expected(tp, value, path)
            return self.check(_optional_inner(tp), value, path, ranges)
        if origin is Literal:
            if not any(value == a and type(value) is type(a) for a in args):  # type(): True == 1
                raise self.fail(f"'{path}' must be {_type_name(tp)}, got {describe_value(value)}")
            return value
        if origin in (tuple, list):
            if not isinstance(value, (list, tuple)):
                raise self.expected(tp, value, path)
            if origin is list or (len(args) == 2 and args[1] is Ellipsis):
                elem_types = [args[0]] * len(value)
            elif len(value) != len(args):
                raise self.expected(tp, value, path)
            else:
                elem_types = list(args)
            items = [self.check(t, v, f"{path}[{i}]", ranges) for i, (t, v) in enumerate(zip(elem_types, value))]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if args[0] is not str:
                raise TypeError(f"config: dict keys must be str, at '{path}'")
            if not isinstance(value, Mapping):
                raise self.expected(tp, value, path)
            for key in value:
                if not isinstance(key, str):
                    raise self.fail(f"'{path}' keys must be strings, got {describe_value(key)}")
            return {k: self.check(args[1], v, _join(path, k), ranges) for k, v in value.items()}
        return self.scalar(tp, value, path, ranges)

    def scalar(self, tp: Any, value: Any, path: str, ranges: tuple[Range, ...]) -> Any:
        # bool is an int subclass: it is refused where a number is expected and only true/false make a bool.
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            ok = number and isinstance(value, int)
        elif tp is float:
            ok = number
            value = float(value) if ok else value
        elif tp is str:
            ok = isinstance(value, str)
        elif isinstance(tp, type) and issubclass(tp, PurePath):
            ok = isinstance(value, (str, PurePath)) and str(value) != ""
            value = tp(value) if ok else value
        else:
            raise TypeError(f"config: unsupported field type {tp!r} at '{path}'")
        if not ok:
            raise self.expected(tp, value, path)
        for r in ranges:
            if tp not in (int, float):
                raise TypeError(f"config: Range on a non-numeric field '{path}'")
            if not r.contains(value):
                raise self.fail(f"'{path}' must be {r}, got {value!r}")
        return value

    def section(self, cls: type, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.expected(cls, value, path)
        fields = _fields(cls)
        out = {}
        for key, v in value.items():
            sub = _join(path, str(key))
            if key not in fields:
                raise self.unknown(sub, [_join(path, f) for f in fields])
            out[key] = self.check(fields[key], v, sub)
        return out

    def unknown(self, path: str, siblings: list[str]) -> UserError:
        candidates = list(dict.fromkeys(siblings + list(_all_keys(self.root))))
        match = difflib.get_close_matches(path, candidates, n=1, cutoff=0.6)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        where = f"on the {_CLI}" if self.source == _CLI else f"in {self.source}"
        return config_error(f"config: unknown key '{path}' {where}{hint}")


def _parse_override(item: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": _Override("value")}}}``."""
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq:
        raise config_error(f"config: malformed override '{item}': expected key=value, e.g. coarse.max_steps=100")
    parts = key.split(".")
    if not all(p.strip() for p in parts):
        raise config_error(f"config: malformed override '{item}': empty key" + (f" part in '{key}'" if key else ""))
    tree: Any = _Override(text)
    for part in reversed(parts):
        tree = {part.strip(): tree}
    return tree


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Mappings merge key by key (sections, dict fields); anything else replaces. ``update`` is freshly built."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def _construct(tp: Any, value: Any, path: str) -> Any:
    """Instantiate the sections of a checked, merged tree; ``validate()`` hooks run innermost first."""
    tp, _ = _unwrap(tp)
    origin, args = get_origin(tp), get_args(tp)
    if value is None:
        return None
    if _is_union(tp):
        return _construct(_optional_inner(tp), value, path)
    if _is_dataclass_type(tp):
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            name, ftp = f.name, _fields(tp)[f.name]
            if name in value:
                kwargs[name] = _construct(ftp, value[name], _join(path, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if (sub := _section_class(ftp)) is None:
                    key = _join(path, name)
                    raise config_error(f"config: missing value for '{key}' (set it in a preset or with {key}=...)")
                kwargs[name] = _construct(sub, {}, _join(path, name))
        # Fields not given keep the class defaults (a `X | None` section first set by a layer starts from them).
        try:
            obj = tp(**kwargs)
            if callable(validate := getattr(obj, "validate", None)):
                validate()
        except ValueError as e:  # __post_init__ or validate(): a cross-field check failed
            raise config_error(f"config: '{path}': {e}" if path else f"config: {e}") from None
        return obj
    if origin is tuple:
        types_ = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_construct(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(types_, value)))
    if origin is list:
        return [_construct(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        return {k: _construct(args[1], v, _join(path, k)) for k, v in value.items()}
    return value


def build(schema: type[T], layers: Sequence[Mapping[str, Any]] = (), overrides: Sequence[str] = ()) -> T:
    """The schema's defaults, then each layer in order, then the ``a.b.c=value`` overrides; checked and instantiated.

    A layer's source in messages is its ``source`` attribute (see :class:`Layer`, :func:`load_yaml`), else "layer N".
    """
    if not _is_dataclass_type(schema):
        raise TypeError(f"config: schema must be a dataclass, not {schema!r}")
    state = _Checker(schema, "defaults").check(schema, _default_tree(schema), "")  # also catches bad defaults
    named = [(getattr(layer, "source", "") or f"layer {i}", layer) for i, layer in enumerate(layers, 1)]
    named += [(_CLI, _parse_override(item)) for item in overrides]
    for source, layer in named:
        _merge(state, _Checker(schema, source).check(schema, layer, ""))
    return _construct(schema, state, "")


# --- Output -------------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _fields(type(value))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config (tuples -> lists, paths -> str), in field order; ready for YAML/JSON."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"config: to_dict expects a dataclass instance, not {cfg!r}")
    return _plain(cfg)


def to_yaml(cfg: Any) -> str:
    """The config as YAML, in field order; ``build(type(cfg), [yaml.safe_load(to_yaml(cfg))]) == cfg``."""
    return write_yaml(to_dict(cfg))


def diff(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs of the same schema, in field order."""
    if type(a) is not type(b):
        raise TypeError(f"config: cannot diff {type(a).__name__} with {type(b).__name__}")
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in dict.fromkeys([*x, *y]):
                if k in x and k in y:
                    walk(x[k], y[k], _join(path, k))
                else:
                    out.append(_join(path, k))
        elif x != y and not (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
            out.append(path)

    walk(to_dict(a), to_dict(b), "")
    return out


@functools.cache
def _class_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass and its dataclass bases, read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:  # the class may have no source (defined in a REPL or by exec): it then simply has no docs
            node = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        except (OSError, TypeError, SyntaxError, IndexError):
            continue
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, nxt in zip(node.body, node.body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def field_docs(schema: type) -> dict[str, str]:
    """Dotted key -> attribute docstring ("" if none) for every field, nested sections included."""
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        docs = _class_docs(cls)
        for name, tp in _fields(cls).items():
            out[prefix + name] = docs.get(name, "")
            if (sub := _section_class(tp)) is not None:
                walk(sub, f"{prefix}{name}.")

    walk(schema, "")
    return out


def _type_desc(tp: Any) -> str:
    """``_type_name`` plus bounds: ``float, > 0`` or ``[float, float], each >= 0``."""
    inner, ranges = _unwrap(tp)
    if _is_union(inner):
        inner, more = _unwrap(_optional_inner(inner))
        ranges += more
    if not ranges:
        return _type_name(tp)
    each = "each " if get_origin(inner) in (tuple, list, dict) else ""
    return f"{_type_name(tp)}, {each}{' and '.join(str(r) for r in ranges)}"


def describe(schema: type) -> str:
    """A listing of every key, one a line: ``key.path (type, default): doc``; sections as ``key: doc``."""
    docs = {k: " ".join(v.split()) for k, v in field_docs(schema).items()}
    lines: list[str] = []

    def walk(cls: type, prefix: str, defaults: Mapping[str, Any]) -> None:
        for name, tp in _fields(cls).items():
            key, value = prefix + name, defaults.get(name, _MISSING)
            sub = _section_class(tp)
            if sub is not None and (value is None or value is _MISSING):
                lines.append(f"{key} (optional section, default null): {docs[key]}".rstrip())
                walk(sub, key + ".", _default_tree(sub))
            elif sub is not None:
                lines.append(f"{key}: {docs[key]}".rstrip())
                walk(sub, key + ".", value)
            else:
                # JSON is valid YAML flow syntax: a shown default can be pasted into an override as is.
                default = "required" if value is _MISSING else "default " + json.dumps(_plain(value))
                lines.append(f"{key} ({_type_desc(tp)}, {default}): {docs[key]}".rstrip())

    walk(schema, "", _default_tree(schema))
    return "\n".join(lines)
