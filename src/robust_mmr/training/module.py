"""The pre-training LightningModule: model + objective, optimiser groups, schedule, logging.

Every random draw of a step is a function of (seed, global step, micro-batch, rank): the objective's generator and
the global RNG (dropout) are re-seeded at each step, so a resumed run replays an uninterrupted one.
A non-finite loss term stops training (:class:`NonFiniteLossError`) before the optimiser uses it.
"""

from __future__ import annotations

import lightning as L
import torch

from robust_mmr.config import RunConfig
from robust_mmr.model import build_model
from robust_mmr.objectives import PretrainObjective
from robust_mmr.objectives.batch import PretrainBatch
from robust_mmr.perturbations.seeding import derive_seed
from robust_mmr.training.optim import adamw, warmup_cosine


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss term became NaN or infinite."""


class PretrainModule(L.LightningModule):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.model, self.tokenizer = build_model(cfg.model)
        self.objective = PretrainObjective(self.model, cfg.objective, self.tokenizer.mask_token_id, len(self.tokenizer))
        self.skipped: list[dict[str, str]] = []  # samples this rank left out at decode time (see screening)

    def training_step(self, batch: PretrainBatch, batch_idx: int) -> torch.Tensor:
        self.skipped += batch.skipped
        # The step's random streams depend only on (seed, step, micro-batch, rank): masks, corruptions and dropout
        # replay on resume; ranks of a distributed run and the micro-batches of an accumulated step draw
        # independently (without accumulation the stream names are what they always were).
        accumulate = self.trainer.accumulate_grad_batches
        stream = f"step-{self.global_step}" + (f"/micro-{batch_idx % accumulate}" if accumulate > 1 else "")
        stream += f"/rank-{self.global_rank}" if self.trainer.world_size > 1 else ""
        generator = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.cfg.train.seed, stream, "pretrain", 1))
        torch.manual_seed(derive_seed(self.cfg.train.seed, stream, "global-rng", 1))
        terms = self.objective(batch, generator)
        self._stop_if_not_finite(terms)
        sync = self.trainer.world_size > 1  # logged values are means over all ranks' samples
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False,
                      batch_size=batch.size, sync_dist=sync)
        self.log("loss", terms["loss"].detach(), prog_bar=True, batch_size=batch.size, sync_dist=sync)
        return terms["loss"]

    def _stop_if_not_finite(self, terms: dict[str, torch.Tensor]) -> None:
        bad = [name for name, value in terms.items() if name != "loss" and not torch.isfinite(value).all()]
        if not torch.isfinite(terms["loss"]).all() and not bad:
            bad = ["loss"]
        if self.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):  # any rank: all ranks stop
            where = f"loss term(s) {', '.join(bad)}" if bad else "a loss term on another rank"
            values = ", ".join(f"{k}={float(v.detach().float().mean()):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(f"non-finite {where} at step {self.global_step} ({values}); training stopped "
                                     "before the update, the last checkpoint holds the weights before it")

    def configure_optimizers(self):
        train = self.cfg.train
        base, rest = self.model.parameter_groups()
        optimizer = adamw([(base, train.lr), (rest, train.lr * train.head_lr_multiplier)], train.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(train.warmup_steps, train.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
