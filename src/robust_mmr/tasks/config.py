"""Fine-tuning settings (the backbone's own config travels with its pre-training run).

Defaults are chosen to reach a plateau with a from-scratch or lightly pre-trained vision side: a
backbone learning rate of 2e-4 (the encoders are small and far from converged features) with the new
head at 5x, one warm-up epoch, the learning rate halved after ``lr_patience`` epochs without a
validation gain and training stopped after ``patience`` such epochs (at ``max_epochs`` at the latest);
the best validation epoch's weights are kept. ``freeze_backbone`` gives the probe protocol: the
pre-trained backbone is frozen and only a head on its features is trained. ``lp_ft`` is linear-probe-then-
fine-tune (Kumar et al. 2022, "Fine-tuning can distort pretrained features and underperform out-of-
distribution"): the head is first trained on the frozen backbone's features (as the probe, up to
``max_epochs``), then everything is fine-tuned from there, so the new head's early gradients do not reshape
the pre-trained features.
"""

from __future__ import annotations

from dataclasses import dataclass

from robust_mmr.config import PRECISIONS
from robust_mmr.errors import InputError

VAL_CARVES = ("auto", "question", "image")  # tasks.data.split_records

TASKS = ("vqa", "classify", "retrieve")


@dataclass
class FinetuneConfig:
    task: str = "vqa"
    max_epochs: int = 60
    patience: int = 6  # epochs without a validation gain before stopping
    lr_patience: int = 2  # epochs without a validation gain before the learning rate is halved
    batch_size: int = 32
    lr: float = 2e-4  # backbone
    head_lr_multiplier: float = 5.0  # the new head
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    freeze_backbone: bool = False  # the probe protocol: train a head on frozen pre-trained features
    lp_ft: bool = False  # linear-probe, then fine-tune everything from that head
    precision: str = "auto"  # from the hardware (robust_mmr.hardware), or a Lightning precision
    accelerator: str = "cpu"  # Lightning's: cpu | gpu | auto ...; evaluation always runs on the CPU
    num_workers: int = 0
    seed: int = 0
    val_fraction: float = 0.1  # carved from train when the data has no val split
    val_carve: str = "auto"  # question | image | auto (question where test images are training images)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"finetune task {self.task!r}: choose one of {', '.join(TASKS)}")
        for name in ("max_epochs", "patience", "lr_patience", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"finetune setting {name}: got {getattr(self, name)}; allowed: an integer >= 1")
        if self.lr <= 0 or self.head_lr_multiplier <= 0:
            raise InputError("finetune settings lr and head_lr_multiplier must be > 0")
        if self.freeze_backbone and self.lp_ft:
            raise InputError("finetune settings freeze_backbone and lp_ft exclude each other (lp_ft fine-tunes the "
                             "backbone after its probe stage)")
        if self.lp_ft and self.task == "retrieve":
            raise InputError("finetune setting lp_ft applies to vqa and classify, not to retrieval")
        if self.precision not in PRECISIONS:
            raise InputError(f"finetune setting precision: got {self.precision!r}; allowed: one of {', '.join(PRECISIONS)}")
        if self.val_carve not in VAL_CARVES:
            raise InputError(f"finetune setting val_carve: got {self.val_carve!r}; allowed: {', '.join(VAL_CARVES)}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"finetune setting val_fraction: got {self.val_fraction}; allowed: in (0, 1)")
