"""Precision chosen from the hardware: one rule for pre-training, fine-tuning, evaluation and prediction.

``precision="auto"`` (the default everywhere) resolves to

- ``bf16-mixed`` on a CUDA GPU that supports bf16 (TF32 matmuls are switched on for what stays fp32);
- ``bf16-mixed`` on a CPU only where bf16 is native: AVX512-BF16 or AMX, with PyTorch dispatching
  AVX-512 kernels and oneDNN's bf16 path available;
- ``32-true`` otherwise. On an AVX2-only CPU a bf16 matmul is emulated and runs ~40x slower than fp32
  (measured in BENCHMARKS.md), so autocast there would slow everything down.

An explicit Lightning precision (``32-true``, ``bf16-mixed``, ...) always wins. What was chosen and why is
:func:`precision_record`, printed and stored with every run. PyTorch's dispatch honours
``ATEN_CPU_CAPABILITY=avx2`` (and oneDNN ``ONEDNN_MAX_CPU_ISA=AVX2``): with them a native-bf16 host behaves,
and is classified, like an AVX2-only one.
"""

from __future__ import annotations

import torch

AUTO = "auto"
BF16_MIXED = "bf16-mixed"
FP32 = "32-true"


def cpu_capability() -> str:
    """The SIMD level PyTorch dispatches CPU kernels to: ``DEFAULT``, ``AVX2``, ``AVX512``, ``AMX`` ..."""
    return torch.backends.cpu.get_cpu_capability()


def native_cpu_bf16() -> bool:
    """True when a CPU bf16 matmul runs on native instructions (AVX512-BF16 or AMX tiles), not emulation."""
    if not cpu_capability().upper().startswith(("AVX512", "AMX")):
        return False
    has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(has_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_cuda(accelerator: str) -> bool:
    """Whether a Lightning ``accelerator`` name puts this process on a CUDA device."""
    return accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available())


def resolve_precision(requested: str, accelerator: str = "cpu") -> str:
    """The Lightning precision to train or infer with: ``requested`` unless it is ``auto`` (see module doc)."""
    if requested != AUTO:
        return requested
    if uses_cuda(accelerator):
        if not torch.cuda.is_available():
            return FP32  # Lightning itself will say that no GPU is there
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return BF16_MIXED if torch.cuda.is_bf16_supported() else FP32
    if accelerator in ("cpu", AUTO):
        return BF16_MIXED if native_cpu_bf16() else FP32
    return FP32  # mps and other accelerators: fp32 until measured


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``None``: run in the weights' own dtype)."""
    return torch.bfloat16 if precision.startswith("bf16") else torch.float16 if precision.startswith("16") else None


def autocast(precision: str, device: torch.device | str = "cpu"):
    """A context manager running inference at a resolved ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = autocast_dtype(precision)
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=dtype, enabled=dtype is not None)


def precision_record(requested: str, accelerator: str = "cpu") -> dict:
    """What was asked, what it resolved to and the hardware facts behind it (stored in run records)."""
    record = {"requested": requested, "resolved": resolve_precision(requested, accelerator),
              "accelerator": accelerator, "cpu_capability": cpu_capability(), "native_cpu_bf16": native_cpu_bf16()}
    if uses_cuda(accelerator) and torch.cuda.is_available():
        record["cuda_device"] = torch.cuda.get_device_name()
    return record


def describe(record: dict) -> str:
    """One line for the log: ``precision: bf16-mixed (auto; CPU AVX512, native bf16)``."""
    how = "auto" if record["requested"] == AUTO else "set explicitly"
    cpu = f"CPU {record['cpu_capability']}, {'native' if record['native_cpu_bf16'] else 'no native'} bf16"
    device = f"; {record['cuda_device']}" if "cuda_device" in record else ""
    return f"precision: {record['resolved']} ({how}; {cpu}{device})"
