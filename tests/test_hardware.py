"""Precision from the hardware: the rule with the CPU capability and CUDA mocked, a real AVX2-dispatch process,
and the resolved precision recorded by pre-training, fine-tuning and evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from robust_mmr import hardware
from robust_mmr.config import load_config
from robust_mmr.training.pretrain import run_pretraining


def mock_cpu(monkeypatch, capability: str, avx512_bf16: bool = False, amx: bool = False, mkldnn_bf16: bool = True):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(hardware.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: mkldnn_bf16, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("capability, avx512_bf16, amx, mkldnn, expected", [
    ("AVX2", False, False, False, "32-true"),          # a laptop / older EPYC: bf16 would be emulated, ~40x slower
    ("AVX2", True, False, True, "32-true"),            # native bf16 present but PyTorch dispatches AVX2 kernels
    ("AVX512", False, False, True, "32-true"),         # AVX-512 without the BF16 extension (Skylake-SP)
    ("AVX512", True, False, True, "bf16-mixed"),       # AVX512-BF16 (Cooper Lake, Zen 4)
    ("AVX512", False, True, True, "bf16-mixed"),       # AMX tiles (Sapphire Rapids)
    ("AVX512", True, False, False, "32-true"),         # oneDNN limited below its bf16 path (ONEDNN_MAX_CPU_ISA)
    ("DEFAULT", False, False, False, "32-true"),
])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, capability, avx512_bf16, amx, mkldnn, expected):
    mock_cpu(monkeypatch, capability, avx512_bf16, amx, mkldnn)
    assert hardware.resolve_precision("auto", "cpu") == expected
    assert hardware.resolve_precision("auto", "auto") == expected  # no GPU: Lightning's auto is the CPU
    record = hardware.precision_record("auto", "cpu")
    assert record["resolved"] == expected and record["cpu_capability"] == capability
    assert record["native_cpu_bf16"] == (expected == "bf16-mixed")


def test_an_explicit_precision_always_wins(monkeypatch):
    mock_cpu(monkeypatch, "AVX2")
    assert hardware.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    mock_cpu(monkeypatch, "AVX512", avx512_bf16=True)
    assert hardware.resolve_precision("32-true", "cpu") == "32-true"
    assert "set explicitly" in hardware.describe(hardware.precision_record("32-true"))


@pytest.mark.parametrize("bf16_gpu, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_on_gpu_uses_bf16_where_supported_and_tf32(monkeypatch, bf16_gpu, expected):
    mock_cpu(monkeypatch, "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        assert hardware.resolve_precision("auto", "gpu") == expected
        assert hardware.resolve_precision("auto", "auto") == expected
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_avx2_dispatch_resolves_to_fp32_in_a_real_process():
    """With PyTorch and oneDNN held to AVX2 (as on an AVX2-only CPU), the unmocked rule picks fp32."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "from robust_mmr.hardware import precision_record as p; import json; print(json.dumps(p('auto')))"
    record = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                       check=True).stdout)
    assert record["cpu_capability"] == "AVX2"
    assert record["resolved"] == "32-true" and not record["native_cpu_bf16"]


def test_autocast_is_a_no_op_at_fp32_and_bf16_at_bf16():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with hardware.autocast("32-true"):
        assert (x @ w).dtype == torch.float32
    with hardware.autocast("bf16-mixed"):
        assert (x @ w).dtype == torch.bfloat16


def test_pretraining_records_and_uses_the_resolved_precision(synth_dir, tmp_path, monkeypatch, capsys):
    mock_cpu(monkeypatch, "AVX2")
    seen = {}
    import lightning as L

    real_init = L.Trainer.__init__

    def spy(self, *args, **kwargs):
        seen["precision"] = kwargs.get("precision")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "__init__", spy)
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1",
                               "train.max_steps=1", "train.batch_size=4", "train.num_workers=0"])
    assert cfg.train.precision == "auto"  # the default
    summary = run_pretraining(cfg, synth_dir, tmp_path, progress=False)
    assert seen["precision"] == "32-true"
    assert summary["precision"]["requested"] == "auto" and summary["precision"]["resolved"] == "32-true"
    assert summary["precision"]["cpu_capability"] == "AVX2"
    assert json.loads((tmp_path / "summary.json").read_text())["precision"]["resolved"] == "32-true"
    assert "precision: 32-true (auto; CPU AVX2, no native bf16)" in capsys.readouterr().out
