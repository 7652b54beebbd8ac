"""The YAML dialect of configs: YAML 1.2 scalars, read and written.

PyYAML implements YAML 1.1: ``yes``/``no``/``on``/``off`` are booleans, ``010`` is octal 8, ``1e-4`` is a *string* (its
floats need a dot) and ``2024-01-01`` is a date. Those surprise users of a config tool, so presets and command-line
values are read with the YAML 1.2 core schema: only true/false are booleans, ``1e-4`` is a float, ``010`` is 10, dates
are strings; and every string that either reader would take for something else is written quoted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

YAMLError = yaml.YAMLError

_BOOL, _INT, _FLOAT, _TIMESTAMP = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp"))
_YAML12 = [  # (tag, regexp, possible first characters); int before float so that "10" is an int
    (_BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (_INT, r"[-+]?[0-9]+(?:_[0-9]+)*|[-+]?0x[0-9a-fA-F]+", "-+0123456789"),
    (_FLOAT, r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+0123456789."),
]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and numbers, and no timestamps."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _rx, _first in _YAML12:
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_rx})$"), list(_first))


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    s = loader.construct_scalar(node)
    return int(s, 16) if "x" in s.lower() else int(s)  # int() reads "010" as 10 and accepts 1_000


def _yaml_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    return float(loader.construct_scalar(node).lower().replace(".inf", "inf").replace(".nan", "nan"))


_Loader.add_constructor(_INT, _yaml_int)
_Loader.add_constructor(_FLOAT, _yaml_float)

class _Dumper(yaml.SafeDumper):
    """Quotes every string that a YAML 1.1 *or* 1.2 reader would take for something else ("yes", "1e3", "010"),
    so that :func:`write_yaml` output reads back the same with ``yaml.safe_load`` and with :func:`read_yaml`."""


for _tag, _rx, _first in _YAML12:
    _Dumper.add_implicit_resolver(_tag, re.compile(f"^(?:{_rx})$"), list(_first))


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    # Lists of scalars (ranges, resolutions) read best on one line: `fov_range: [40.0, 70.0]`.
    flow = all(not isinstance(x, (list, tuple, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def yaml_where(e: yaml.YAMLError) -> str:
    """Where and what a parse error is: ``" at line L, column C: problem"``."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}"


def read_yaml(text: str) -> Any:
    """The value of a YAML document (or of one command-line value) in the YAML 1.2 dialect; raises
    :class:`YAMLError`."""
    return yaml.load(text, Loader=_Loader)


def write_yaml(data: Any) -> str:
    """``data`` as block YAML in key order, lists of scalars on one line, ambiguous strings quoted."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
