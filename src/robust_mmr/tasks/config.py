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
HEADS = ("auto", "pooled", "mean", "attention")  # tasks.model.pair_features

TASKS = ("vqa", "classify", "retrieve")
# Lightning strategies fine-tuning runs under (tasks.module.fit_keeping_best); with devices > 1 each means DDP that
# tolerates unused parameters (the backbone's pre-training heads). Not ddp_spawn: the kept best epoch lives on the
# spawned processes; not fsdp: the best-epoch copy needs full state dicts.
FINETUNE_STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


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
    blind: bool = False  # the trained blind baseline: the image removed in training and at test
    augment: bool = False  # training images: small random crop, rotation and intensity jitter (tasks.data)
    head: str = "auto"  # the head's input: auto (pooled; mean for the probe and LP-FT) | pooled | mean | attention
    precision: str = "auto"  # from the hardware (robust_mmr.hardware), or a Lightning precision
    accelerator: str = "cpu"  # Lightning's: cpu | gpu | auto ...; also where the probe caches features
    devices: int = 1  # processes (one per GPU; on CPU, processes); batch_size is per process
    strategy: str = "auto"  # one of FINETUNE_STRATEGIES
    # retrieval ITC on several devices: every process's pairs are negatives (gathered with gradients); true: each
    # process scores its own queries against them (open_clip's local_loss), false: the full global matrix on each.
    # Same loss (mean over processes) and gradients as one process with the global batch; none on one device.
    itc_local_loss: bool = True
    num_workers: int = 0
    on_bad_sample: str = "skip"  # an undecodable image: skip its records (listed in task.json) | fail (name it)
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
        if self.blind and (self.freeze_backbone or self.lp_ft or self.task == "retrieve"):
            raise InputError("finetune setting blind (the image removed in training and at test) applies to full "
                             "fine-tuning of vqa or classify, not with freeze_backbone, lp_ft or retrieval")
        if self.lp_ft and self.task == "retrieve":
            raise InputError("finetune setting lp_ft applies to vqa and classify, not to retrieval")
        if self.devices < 1:
            raise InputError(f"finetune setting devices: got {self.devices}; allowed: an integer >= 1")
        if self.strategy not in FINETUNE_STRATEGIES:
            raise InputError(f"finetune setting strategy: got {self.strategy!r}; allowed: one of "
                             f"{', '.join(FINETUNE_STRATEGIES)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"finetune setting precision: got {self.precision!r}; allowed: one of "
                             f"{', '.join(PRECISIONS)}")
        if self.head == "attention" and (self.freeze_backbone or self.lp_ft):
            raise InputError("finetune setting head=attention applies to full fine-tuning (the probe and LP-FT "
                             "train their head on cached mean features)")
        if self.on_bad_sample not in ("skip", "fail"):
            raise InputError(f"finetune setting on_bad_sample: got {self.on_bad_sample!r}; allowed: skip, fail")
        if self.head not in HEADS:
            raise InputError(f"finetune setting head: got {self.head!r}; allowed: {', '.join(HEADS)}")
        if self.val_carve not in VAL_CARVES:
            raise InputError(f"finetune setting val_carve: got {self.val_carve!r}; allowed: {', '.join(VAL_CARVES)}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"finetune setting val_fraction: got {self.val_fraction}; allowed: in (0, 1)")
