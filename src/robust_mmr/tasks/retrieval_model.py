"""Image–caption retrieval model: CLIP-style contrastive (ITC) embeddings of the unimodal features.

The image CLS token of ``encode_image`` and the mean of the valid text tokens of ``encode_text`` (both
already in the fusion width D) are projected to ``dim`` and L2-normalised, so one matrix product
scores every image against every caption. The text side is mean-pooled, not its CLS token: MLM
pre-training never trains the text CLS and the MiniLM init is trained with mean pooling; on a scratch
tiny backbone the text CLS barely differs between captions (between-caption std 0.005 against 0.07
for the mean, eval mode) and InfoNCE on it does not move in 15 steps while the mean's falls. When the backbone has an ITM head, the fused pair also gets a match
score (ALBEF-style re-ranking of the top candidates) and is trained with hard negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_mmr.model.mmr_model import MMRModel, mean_tokens
from robust_mmr.objectives.losses import info_nce

INIT_TEMPERATURE = 0.07  # CLIP (Radford et al. 2021)
MAX_LOGIT_SCALE = 100.0  # CLIP clamps 1 / temperature at 100


class RetrievalModel(nn.Module):
    """Backbone + ITC projections + a learnable temperature (CLIP-style).

    embed: pixels (B, C, H, W), input_ids, attention_mask (B, L) → image (B, dim), text (B, dim) unit vectors.
    """

    def __init__(self, backbone: MMRModel, dim: int):
        super().__init__()
        self.backbone = backbone
        width = backbone.cfg.fusion.hidden
        self.image_itc = nn.Linear(width, dim)
        self.text_itc = nn.Linear(width, dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / INIT_TEMPERATURE)))

    @property
    def has_itm(self) -> bool:
        return self.backbone.itm_head is not None

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters this task adds (trained at the head learning rate)."""
        return [*self.image_itc.parameters(), *self.text_itc.parameters(), self.log_scale]

    def image_feature(self, image_tokens: Tensor) -> Tensor:
        """(B, 1 + K, D) tokens from ``encode_image`` → (B, D): the CLS token."""
        return image_tokens[:, 0]

    def text_feature(self, text_tokens: Tensor, text_valid: Tensor) -> Tensor:
        """(B, L, D) tokens and (B, L) validity from ``encode_text`` → (B, D): the mean of the valid tokens."""
        return mean_tokens(text_tokens, text_valid)

    def image_embedding(self, image_tokens: Tensor) -> Tensor:
        """(B, 1 + K, D) tokens from ``encode_image`` → (B, dim) unit vectors."""
        return self.project_image(self.image_feature(image_tokens))

    def text_embedding(self, text_tokens: Tensor, text_valid: Tensor) -> Tensor:
        """(B, L, D) tokens and (B, L) validity from ``encode_text`` → (B, dim) unit vectors."""
        return self.project_text(self.text_feature(text_tokens, text_valid))

    def project_image(self, feature: Tensor) -> Tensor:
        """(B, D) image features → (B, dim) unit vectors."""
        return F.normalize(self.image_itc(feature), dim=-1)

    def project_text(self, feature: Tensor) -> Tensor:
        """(B, D) text features → (B, dim) unit vectors."""
        return F.normalize(self.text_itc(feature), dim=-1)

    def embed(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        image, _ = self.backbone.encode_image(pixels)
        text, text_valid = self.backbone.encode_text(input_ids, attention_mask)
        return self.image_embedding(image), self.text_embedding(text, text_valid)

    def logit_scale(self) -> Tensor:
        """1 / temperature, clamped to [1, 100]."""
        return self.log_scale.clamp(0.0, math.log(MAX_LOGIT_SCALE)).exp()

    def itc_loss(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        """Symmetric InfoNCE over the batch at the learned temperature: row i of each (B, dim) matrix is the pair."""
        return info_nce(image_emb, text_emb, 1.0 / self.logit_scale())

    def match_logits(self, image: Tensor, image_valid: Tensor, text: Tensor, text_valid: Tensor) -> Tensor:
        """ITM log-odds that each fused pair matches: streams (P, 1 + K, D), (P, L, D) → (P,)."""
        logits = self.backbone.itm_head(self.backbone.fuse(image, image_valid, text, text_valid).pooled).float()
        return logits[:, 1] - logits[:, 0]

    def itm_loss(self, image: Tensor, image_valid: Tensor, text: Tensor, text_valid: Tensor, logits: Tensor) -> Tensor:
        """ITM with one hard negative caption per image and one hard negative image per caption, drawn in
        proportion to the softmax of the ITC ``logits`` (B, B) off the diagonal (ALBEF, Li et al. 2021)."""
        b = len(logits)
        if b < 2:
            return logits.new_zeros(())
        with torch.no_grad():
            off_diagonal = ~torch.eye(b, dtype=torch.bool, device=logits.device)
            weights = (logits.float().softmax(1) + 1e-8) * off_diagonal
            neg_text = torch.multinomial(weights, 1).squeeze(1)
            weights = (logits.float().T.softmax(1) + 1e-8) * off_diagonal
            neg_image = torch.multinomial(weights, 1).squeeze(1)
        scores = self.match_logits(torch.cat([image, image, image[neg_image]]),
                                   torch.cat([image_valid, image_valid, image_valid[neg_image]]),
                                   torch.cat([text, text[neg_text], text]),
                                   torch.cat([text_valid, text_valid[neg_text], text_valid]))
        target = torch.cat([torch.ones(b), torch.zeros(2 * b)]).to(scores.device)
        return F.binary_cross_entropy_with_logits(scores, target)
