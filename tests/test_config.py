"""Tests for text3d.config: layering, overrides, checks and their one-line messages, YAML, docs, presets."""

from __future__ import annotations  # like the package modules: string annotations must resolve too

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml

from text3d.app.presets import load_config
from text3d.app.schema import Text3DConfig
from text3d.config import Layer, Range, build, describe, diff, field_docs, load_yaml, resolve_preset, to_dict, to_yaml
from text3d.errors import UserError


@dataclass
class OptimConfig:
    """Optimiser settings."""

    lr: Annotated[float, Range(min=0, min_exclusive=True)] = 1e-2
    """Learning rate."""
    betas: Annotated[tuple[float, float], Range(min=0, max=1, max_exclusive=True)] = (0.9, 0.99)
    """Adam betas,
    each in [0, 1)."""


@dataclass
class TrainerConfig:
    max_steps: Annotated[int, Range(min=1)] = 1000
    """Number of optimisation steps."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Numeric precision."""
    log_every: int | None = None
    """Log interval in steps (null: never)."""


@dataclass
class CamConfig:
    fov_range: tuple[float, float] = (40.0, 70.0)
    """Vertical field of view range, degrees."""
    resolutions: tuple[int, ...] = (64,)
    """Image sizes of the coarse-to-fine schedule."""

    def validate(self) -> None:
        lo, hi = self.fov_range
        if lo > hi:
            raise ValueError(f"fov_range min {lo} > max {hi}")


@dataclass
class GuideConfig:
    model: str | None = "sd-2.1"
    """Diffusion model name."""
    scale: float = 100.0
    """Classifier-free guidance scale."""


@dataclass
class Config:
    name: str = "run"
    """Run name."""
    seed: int = 0
    """Random seed."""
    deterministic: bool = False
    """Deterministic kernels."""
    output_dir: Path = Path("outputs")
    """Where runs are written."""
    tags: list[str] = field(default_factory=list)
    """Free-form tags."""
    weights: dict[str, Annotated[float, Range(min=0)]] = field(default_factory=lambda: {"sds": 1.0, "orient": 0.0})
    """Loss weights by name."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Training loop."""
    camera: CamConfig = field(default_factory=CamConfig)
    """Cameras."""
    guide: GuideConfig | None = None
    """Guidance (null: none)."""

    def validate(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


@dataclass
class Required:
    prompt: str
    """The text prompt (no default)."""
    trainer: TrainerConfig
    """A section without a default takes its own defaults."""


def one_line_error(layers=(), overrides=(), schema=Config) -> str:
    with pytest.raises(UserError) as info:
        build(schema, layers, overrides)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("config: ")
    return msg


# --- building --------------------------------------------------------------------------------------------------
def test_defaults():
    cfg = build(Config, [])
    assert cfg == Config()
    assert isinstance(cfg.trainer.optim, OptimConfig) and cfg.guide is None
    assert isinstance(cfg.output_dir, Path)
    assert cfg.weights is not build(Config).weights  # fresh containers each time


def test_layering_order_later_wins_overrides_last():
    a = Layer({"seed": 1, "trainer": {"max_steps": 10, "optim": {"lr": 0.5}}}, source="a.yaml")
    b = {"trainer": {"max_steps": 20}, "weights": {"orient": 0.5}}
    cfg = build(Config, [a, b], ["trainer.max_steps=30"])
    assert cfg.trainer.max_steps == 30
    assert cfg.seed == 1 and cfg.trainer.optim.lr == 0.5  # sections merge key by key
    assert cfg.trainer.optim.betas == (0.9, 0.99) and cfg.trainer.precision == "fp32"
    assert cfg.weights == {"sds": 1.0, "orient": 0.5}  # dict fields merge too
    assert build(Config, [], ["seed=1", "seed=2"]).seed == 2


def test_override_values_use_yaml_scalars():
    cfg = build(
        Config,
        [],
        [
            "camera.fov_range=[40,70]",
            "name=hello world",
            "trainer.optim.lr=1e-4",  # a float (YAML 1.2), not the string PyYAML's 1.1 rules would give
            "deterministic=true",
            "seed=010",  # decimal, not octal
            "tags=[a, b]",
            "output_dir=out/run1",
            "weights.extra=2",
            "trainer.log_every=null",
        ],
    )
    assert cfg.camera.fov_range == (40.0, 70.0) and all(type(x) is float for x in cfg.camera.fov_range)
    assert cfg.name == "hello world" and cfg.trainer.optim.lr == 1e-4 and cfg.deterministic is True
    assert cfg.seed == 10 and cfg.tags == ["a", "b"] and cfg.output_dir == Path("out/run1")
    assert cfg.weights == {"sds": 1.0, "orient": 0.0, "extra": 2.0} and type(cfg.weights["extra"]) is float
    assert cfg.trainer.log_every is None
    # A str field takes the text as typed, whatever YAML would make of it.
    assert build(Config, [], ["name=123"]).name == "123"
    assert build(Config, [], ["name=1.10"]).name == "1.10"
    assert build(Config, [], ["name=a: b"]).name == "a: b"
    assert build(Config, [], ["name='quoted'"]).name == "quoted"


def test_int_accepted_for_float_and_tuple_from_list():
    cfg = build(Config, [{"trainer": {"optim": {"lr": 1}}, "camera": {"resolutions": [64, 128, 256]}}])
    assert cfg.trainer.optim.lr == 1.0 and type(cfg.trainer.optim.lr) is float
    assert cfg.camera.resolutions == (64, 128, 256)


def test_optional_section_and_values():
    cfg = build(Config, [], ["guide.scale=7.5"])
    assert cfg.guide == GuideConfig(model="sd-2.1", scale=7.5)  # unset fields take the class defaults
    assert build(Config, [], ["guide.scale=7.5", "guide.model=null"]).guide == GuideConfig(model=None, scale=7.5)
    assert build(Config, [{"guide": {"model": "if"}}], ["guide=null"]).guide is None
    assert build(Config, [], ["trainer.log_every=5"]).trainer.log_every == 5


def test_literal():
    assert build(Config, [], ["trainer.precision=bf16"]).trainer.precision == "bf16"
    msg = one_line_error(overrides=["trainer.precision=fp8"])
    assert msg == "config: 'trainer.precision' must be one of 'fp32', 'bf16', 'fp16', got str 'fp8' (command line)"


def test_required_fields():
    cfg = build(Required, [{"prompt": "a cat"}])
    assert cfg.prompt == "a cat" and cfg.trainer == TrainerConfig()
    msg = one_line_error(schema=Required)
    assert "missing value for 'prompt'" in msg


# --- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layers", "overrides", "pattern", "key"),
    [
        ([Layer({"trainer": {"max_step": 5}}, "preset.yaml")], [], r"^config: unknown key 'trainer\.max_step' in "
         r"preset\.yaml \(did you mean 'trainer\.max_steps'\?\)$", "trainer.max_step"),
        ([], ["max_steps=5"], r"unknown key 'max_steps' on the command line \(did you mean 'trainer\.max_steps'", None),
        ([{"nonsense_zzz": 1}], [], r"^config: unknown key 'nonsense_zzz' in layer 1$", "nonsense_zzz"),
        ([], ["trainer.max_steps=abc"], r"^config: 'trainer\.max_steps' expects int, got str 'abc' \(command line\)$",
         "trainer.max_steps"),
        ([], ["trainer.max_steps=1.5"], r"expects int, got float 1\.5", "trainer.max_steps"),
        ([], ["trainer.optim.lr=-1"], r"^config: 'trainer\.optim\.lr' must be > 0, got -1\.0 \(command line\)$",
         "trainer.optim.lr"),
        ([], ["trainer.max_steps=0"], r"'trainer\.max_steps' must be >= 1, got 0", "trainer.max_steps"),
        ([], ["trainer.optim.lr=.nan"], r"must be > 0, got nan", "trainer.optim.lr"),
        ([], ["trainer.optim.betas=[0.9, 1.0]"], r"'trainer\.optim\.betas\[1\]' must be >= 0 and < 1, got 1\.0",
         "trainer.optim.betas[1]"),
        ([], ["weights.sds=-1"], r"'weights\.sds' must be >= 0, got -1\.0", "weights.sds"),
        ([], ["camera.fov_range=[1,2,3]"], r"'camera\.fov_range' expects \[float, float\], got a list of 3",
         "camera.fov_range"),
        ([], ["camera.fov_range=40"], r"'camera\.fov_range' expects \[float, float\], got int 40", "camera.fov_range"),
        ([], ["camera.resolutions=[64, x]"], r"'camera\.resolutions\[1\]' expects int, got str 'x'",
         "camera.resolutions[1]"),
        ([], ["tags=[a, 1]"], r"'tags\[1\]' expects str, got int 1", "tags[1]"),
        # booleans: only true/false; no 0/1, no YAML 1.1 yes/no/on/off; and a bool is not an int
        ([], ["deterministic=1"], r"'deterministic' expects bool, got int 1", "deterministic"),
        ([], ["deterministic=yes"], r"'deterministic' expects bool, got str 'yes'", "deterministic"),
        ([{"deterministic": "true"}], [], r"'deterministic' expects bool, got str 'true' \(layer 1\)", "deterministic"),
        ([], ["seed=true"], r"'seed' expects int, got bool True", "seed"),
        ([], ["trainer.optim.lr=true"], r"expects float, got bool True", "trainer.optim.lr"),
        # mapping <-> scalar
        ([{"trainer": {"max_steps": {"a": 1}}}], [], r"'trainer\.max_steps' expects int, got a mapping \(layer 1\)",
         "trainer.max_steps"),
        ([], ["trainer=5"], r"^config: 'trainer' expects a mapping, got int 5 \(command line\)$", "trainer"),
        ([], ["trainer.max_steps.x=5"], r"'trainer\.max_steps' expects int, got a mapping", "trainer.max_steps"),
        ([], ["weights=3"], r"'weights' expects \{str: float\}, got int 3", "weights"),
        ([{"weights": {1: 2.0}}], [], r"'weights' keys must be strings, got int 1", "weights"),
        ([{"output_dir": 5}], [], r"'output_dir' expects path, got int 5", "output_dir"),
        ([{"name": None}], [], r"'name' expects str, got null", "name"),
        ([[1, 2]], [], r"expects a mapping, got a list of 2 \(layer 1\)", None),
        ([], ["trainer.max_steps=[1"], r"cannot parse the value of 'trainer\.max_steps' \(command line\) at line 1",
         "trainer.max_steps"),
        # malformed overrides
        ([], ["trainer.max_steps"], r"malformed override 'trainer\.max_steps': expected key=value", None),
        ([], ["=5"], r"malformed override '=5': empty key", None),
        ([], ["trainer..max_steps=5"], r"empty key part in 'trainer\.\.max_steps'", None),
        # validate() hooks, innermost first
        ([], ["camera.fov_range=[70,40]"], r"^config: 'camera': fov_range min 70\.0 > max 40\.0$", "camera"),
        ([], ["seed=-1"], r"^config: seed must be >= 0$", None),
        ([], ["seed=-1", "camera.fov_range=[70,40]"], r"^config: 'camera': ", "camera"),
    ],
)
def test_errors(layers, overrides, pattern, key):
    msg = one_line_error(layers, overrides)
    assert re.search(pattern, msg), msg
    if key is not None:
        assert f"'{key}'" in msg


def test_error_names_preset_file(tmp_path):
    (tmp_path / "preset.yaml").write_text("trainer:\n  max_steps: abc\n")
    msg = one_line_error([load_yaml(tmp_path / "preset.yaml")])
    assert msg == "config: 'trainer.max_steps' expects int, got str 'abc' (preset.yaml)"


def test_messages_stay_one_line():
    msg = one_line_error([{"weird\nkey": 1}])
    assert "unknown key 'weird key'" in msg


def test_range_marker():
    assert str(Range(min=0, min_exclusive=True)) == "> 0" and str(Range(0, 1, max_exclusive=True)) == ">= 0 and < 1"
    assert Range(max=1).contains(1) and not Range(max=1, max_exclusive=True).contains(1)
    with pytest.raises(ValueError):
        Range(min=2, max=1)


# --- YAML ---------------------------------------------------------------------------------------------------------
def test_load_yaml(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("trainer:\n  optim: {lr: 1e-4}\nname: yes\nseed: 010\nwhen: 2024-01-01\n")
    data = load_yaml(p)
    assert data == {"trainer": {"optim": {"lr": 1e-4}}, "name": "yes", "seed": 10, "when": "2024-01-01"}
    assert isinstance(data, dict) and data.source == "p.yaml"
    assert yaml.safe_dump(data)  # a Layer stays dumpable
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (None, r"^config: file not found: .*missing\.yaml$"),
        ("a: [1, 2\nb: 3\n", r"^config: invalid YAML in .*bad\.yaml at line \d+, column \d+: "),
        ("a: b: c\n", r"^config: invalid YAML in .*bad\.yaml at line 1, column 5: mapping values are not allowed"),
        ("- 1\n- 2\n", r"^config: .*bad\.yaml must hold a mapping of keys at the top level, got a list of 2$"),
        ("42\n", r"top level, got int 42$"),
    ],
)
def test_load_yaml_errors(tmp_path, text, pattern):
    path = tmp_path / ("missing.yaml" if text is None else "bad.yaml")
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=pattern) as info:
        load_yaml(path)
    assert "\n" not in str(info.value)


def test_yaml_round_trip(tmp_path):
    cfg = build(
        Config,
        [{"name": "yes", "tags": ["1e3", "010", "null", "true", "a: b"], "guide": {"model": None}}],
        ["output_dir=/tmp/x y", "trainer.optim.lr=1e-05", "weights.new=.inf", "camera.resolutions=[64,128]"],
    )
    text = to_yaml(cfg)
    assert build(Config, [yaml.safe_load(text)]) == cfg  # plain PyYAML (YAML 1.1) reader
    (tmp_path / "c.yaml").write_text(text)
    assert build(Config, [load_yaml(tmp_path / "c.yaml")]) == cfg  # our YAML 1.2 reader
    assert list(yaml.safe_load(text)) == list(Config.__dataclass_fields__)  # field order kept
    assert "fov_range: [40.0, 70.0]" in text


def test_to_dict_is_plain():
    d = to_dict(build(Config, [], ["guide.scale=1"]))
    assert d["output_dir"] == "outputs" and d["camera"]["fov_range"] == [40.0, 70.0]
    assert d["guide"] == {"model": "sd-2.1", "scale": 1.0} and d["trainer"]["optim"]["betas"] == [0.9, 0.99]
    assert yaml.safe_dump(d) and type(d) is dict


def test_diff():
    a = build(Config)
    b = build(Config, [], ["seed=3", "trainer.optim.lr=0.5", "weights.new=1", "guide.scale=2"])
    assert diff(a, a) == [] and diff(a, build(Config)) == []
    assert diff(a, b) == ["seed", "weights.new", "trainer.optim.lr", "guide"]
    c = build(Config, [], ["guide.scale=3", "seed=3"])
    assert diff(b, c) == ["weights.new", "trainer.optim.lr", "guide.scale"]


# --- docs -----------------------------------------------------------------------------------------------------------
def test_field_docs():
    docs = field_docs(Config)
    assert docs["trainer.max_steps"] == "Number of optimisation steps."
    assert docs["trainer"] == "Training loop." and docs["trainer.optim.lr"] == "Learning rate."
    assert docs["trainer.optim.betas"] == "Adam betas,\neach in [0, 1)."
    assert docs["guide.scale"] == "Classifier-free guidance scale."  # walks into `X | None` sections
    assert set(docs) >= {"name", "weights", "camera.fov_range", "camera.resolutions", "guide.model"}
    assert all(docs.values()), "every field of the test schema is documented"


def test_describe():
    text = describe(Config)
    lines = text.splitlines()
    assert "trainer.max_steps (int, >= 1, default 1000): Number of optimisation steps." in lines
    assert "trainer.optim.lr (float, > 0, default 0.01): Learning rate." in lines
    betas = "trainer.optim.betas ([float, float], each >= 0 and < 1, default [0.9, 0.99]): Adam betas, each in [0, 1)."
    assert betas in lines  # multi-line docs are joined into one line
    assert "trainer.precision (one of 'fp32', 'bf16', 'fp16', default \"fp32\"): Numeric precision." in lines
    assert "trainer: Training loop." in lines
    assert "guide (optional section, default null): Guidance (null: none)." in lines
    assert 'guide.model (str or null, default "sd-2.1"): Diffusion model name.' in lines
    assert 'output_dir (path, default "outputs"): Where runs are written.' in lines
    assert "prompt (str, required): The text prompt (no default)." in describe(Required).splitlines()


# --- presets ---------------------------------------------------------------------------------------------------------
def test_resolve_preset(tmp_path, monkeypatch):
    d1, d2 = tmp_path / "presets", tmp_path / "user"
    d1.mkdir(), d2.mkdir()
    (d1 / "fast.yaml").write_text("trainer: {max_steps: 10}\n")
    (d2 / "fast.yaml").write_text("")
    (d2 / "hq.yml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert resolve_preset("fast", [d1, d2]) == d1 / "fast.yaml"  # first search dir wins
    assert resolve_preset("hq", [d1, d2]) == d2 / "hq.yml"
    assert resolve_preset(str(d2 / "fast.yaml"), [d1]) == d2 / "fast.yaml"  # a path is used as is
    monkeypatch.chdir(tmp_path)
    assert resolve_preset("presets/fast.yaml", []) == Path("presets/fast.yaml")
    pattern = r"^config: unknown preset 'fsat' \(available presets: fast, hq; did you mean 'fast'\?"
    with pytest.raises(UserError, match=pattern):
        resolve_preset("fsat", [d1, d2, tmp_path / "nope"])
    with pytest.raises(UserError, match=r"preset file not found: gone\.yaml \(available presets: none"):
        resolve_preset("gone.yaml", [])
    with pytest.raises(UserError, match=r"unknown preset 'notes\.txt'"):
        resolve_preset("notes.txt", [d1])
    assert build(Config, [load_yaml(resolve_preset("fast", [d1]))]).trainer.max_steps == 10


def _numeric_fields(cls: type, prefix: str = ""):
    """(dotted key, base type, ranges) of every int/float field (and tuple of them) of a config schema."""
    import dataclasses
    import types
    import typing

    from text3d.config import Range

    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp, ranges = hints[f.name], []
        while True:
            if typing.get_origin(tp) is typing.Annotated:
                tp, *meta = typing.get_args(tp)
                ranges += [m for m in meta if isinstance(m, Range)]
            elif typing.get_origin(tp) in (typing.Union, types.UnionType):
                tp = next(a for a in typing.get_args(tp) if a is not type(None))
            else:
                break
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
        elif tp in (int, float) or (typing.get_origin(tp) is tuple and set(typing.get_args(tp)) <= {int, float}):
            yield prefix + f.name, tp, ranges


def test_every_numeric_setting_has_a_range_and_every_integer_an_upper_bound():
    fields = list(_numeric_fields(Text3DConfig))
    assert len(fields) > 60
    assert [key for key, _, ranges in fields if not ranges] == []
    assert [key for key, tp, ranges in fields if tp is int and all(r.max is None for r in ranges)] == []


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=18446744073709551616", "seed"),
        ("seed=-1", "seed"),
        ("coarse.camera.height=0", "coarse.camera.height"),
        ("coarse.camera.batch_size=0", "coarse.camera.batch_size"),
        ("geometry.camera.width=-4", "geometry.camera.width"),
        ("texture.camera.eval_views=0", "texture.camera.eval_views"),
        ("coarse.max_steps=1000000000000", "coarse.max_steps"),
    ],
)
def test_out_of_range_numbers_are_one_line_errors_at_load(override, key):
    with pytest.raises(UserError, match=rf"^config: '{re.escape(key)}' .*(must be|expected)"):
        load_config(None, [override])


def test_every_key_an_error_message_names_exists():
    """A message that tells the user to change a setting names one that exists (or a section of them)."""
    import ast

    from text3d.config import field_docs

    keys = set(field_docs(Text3DConfig))
    sections = sorted({k.split(".")[0] for k in keys})
    pattern = re.compile(r"\b((?:%s)(?:\.[a-z_0-9]+)+)" % "|".join(sections))
    named = []
    for path in sorted((Path(__file__).resolve().parent.parent / "text3d").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Raise, ast.Call)) and (
                isinstance(node, ast.Raise)
                or (isinstance(node.func, ast.Name) and node.func.id.endswith("Error"))
                or (isinstance(node.func, ast.Attribute) and node.func.attr in ("warning", "error"))
            ):
                for const in ast.walk(node):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        named += [(path.name, m) for m in pattern.findall(const.value)]
    assert len(named) > 10
    unknown = [(f, k) for f, k in named if k not in keys and not any(x.startswith(k + ".") for x in keys)]
    assert unknown == []
