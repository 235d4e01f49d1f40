"""Recipe parts for real images: the per-patch conv stem keeps masking valid, the attention head, fine-tuning
augmentation."""

from __future__ import annotations

import pytest
import torch

from robust_mmr.config import load_config
from robust_mmr.errors import InputError
from robust_mmr.model import build_model
from robust_mmr.model.vision import PatchConvStem
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.data import augment_image
from robust_mmr.tasks.model import PairClassifier


def test_conv_stem_never_mixes_patches():
    """Changing the pixels of one patch changes that patch's token only: a masked patch leaks into no visible one."""
    torch.manual_seed(0)
    stem = PatchConvStem(channels=1, patch_size=16, hidden=32)
    x = torch.rand(1, 1, 64, 64)
    y = x.clone()
    y[:, :, 16:32, 32:48] = torch.rand(1, 1, 16, 16)  # patch (row 1, column 2) = index 6 of 16
    a, b = stem(x), stem(y)
    assert a.shape == (1, 16, 32)
    changed = (a - b).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [6]


def test_a_model_with_the_conv_stem_and_an_attention_head_runs_and_trains():
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1",
                               "model.fusion.layers=1", "model.patch_stem=conv"])
    backbone, tokenizer = build_model(cfg.model)
    assert backbone.vision.conv_stem is not None
    model = PairClassifier(backbone, 4, features="attention")
    enc = tokenizer(["is there a fracture?", "which organ?"], padding=True, return_tensors="pt")
    logits = model(torch.rand(2, 1, 64, 64), enc["input_ids"], enc["attention_mask"])
    logits.sum().backward()
    assert logits.shape == (2, 4)
    assert backbone.vision.conv_stem.convs[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pools.parameters())
    assert set(map(id, model.pools.parameters())) <= set(map(id, model.head_parameters()))
    with pytest.raises(InputError, match="patch_stem"):
        load_config("tiny", ["model.patch_stem=sobel"])
    with pytest.raises(InputError, match="head=attention"):
        FinetuneConfig(head="attention", freeze_backbone=True)


def test_augmentation_is_mild_seeded_and_in_range():
    image = torch.linspace(0, 1, 64 * 64).view(1, 64, 64)
    torch.manual_seed(1)
    a = augment_image(image)
    torch.manual_seed(1)
    b = augment_image(image)
    assert torch.equal(a, b) and a.shape == image.shape
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert 0 < (a - image).abs().mean() < 0.15  # changed, but the image is still the image
    torch.manual_seed(2)
    assert not torch.equal(augment_image(image), a)


def test_the_pretrained_text_encoder_trains_in_train_mode_without_dropout():
    """MiniLM comes out of from_pretrained in eval mode; the `real` preset trains it in train mode with dropout 0,
    so its outputs do not depend on the module's mode (the measured recipe), and nothing is left in eval mode."""
    cfg = load_config("real", [])
    backbone, tokenizer = build_model(cfg.model)
    text = backbone.text.model
    assert all(module.training for module in text.modules())
    assert all(module.p == 0.0 for module in text.modules() if isinstance(module, torch.nn.Dropout))
    enc = tokenizer(["is there a fracture?"], return_tensors="pt")
    with torch.no_grad():
        trained = backbone.text(enc["input_ids"], enc["attention_mask"])
        evaluated = backbone.eval().text(enc["input_ids"], enc["attention_mask"])
    torch.testing.assert_close(trained, evaluated)
