"""Inference on the accelerator when one is present (``--device``): the model is moved there once, every input batch
is moved there, results come back to the CPU, and on the CPU nothing changes.

No GPU is needed: :func:`pretend_cuda` reports CUDA as present and turns every ``.to(<cuda>)`` of a module or a
tensor into a recorded no-op; a tensor "moved" that way is a new view the spy remembers, so the model's entry points
can check that each input batch they receive went through the move. The math then runs on the CPU, so the
predictions under the stand-in must equal the CPU's exactly.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robust_mmr.cli.main import build_parser
from robust_mmr.config import load_config
from robust_mmr.errors import InputError
from robust_mmr.evaluation.predict import Cell, Predictor, resolve_device
from robust_mmr.evaluation.protocols import evaluate_run
from robust_mmr.model import build_model
from robust_mmr.model.mmr_model import MMRModel
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.data import TaskCollator, TaskDataset, load_task_records, record_target
from robust_mmr.tasks.finetune import save_task_run
from robust_mmr.tasks.labels import LabelVocab
from robust_mmr.tasks.model import PairClassifier
from robust_mmr.tasks.predict import RunPredictor
from robust_mmr.tasks.probe import classifier_features, feature_placement
from robust_mmr.tasks.retrieval import PairCollator, load_pairs, unimodal_features
from robust_mmr.tasks.retrieval_model import RetrievalModel

SMALL_MODEL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
               "model.decoder.layers=1", "model.max_text_length=24"]
# the model entry points an input batch reaches, and the positions (after self) of the arguments that must be on
# the device: the raw inputs; fuse's token arguments are encodings, its drop flags are built per batch
ENTRY_POINTS = {(MMRModel, "forward"): (0, 1, 2), (MMRModel, "encode_image"): (0,), (MMRModel, "encode_text"): (0, 1),
                (MMRModel, "fuse"): (4, 5), (PairClassifier, "forward"): (0, 1, 2)}


class Placement:
    """What the CUDA stand-in saw: modules moved to CUDA, tensors moved there, entry-point calls and stray inputs."""

    def __init__(self):
        self.modules: list[torch.nn.Module] = []
        self.tensors: dict[int, weakref.ref] = {}
        self.calls: Counter = Counter()
        self.stray: list[str] = []

    def moved(self, tensor: torch.Tensor) -> bool:
        ref = self.tensors.get(id(tensor))
        return ref is not None and ref() is tensor


def _is_cuda(target) -> bool:
    return isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda"


@contextlib.contextmanager
def pretend_cuda():
    """CUDA reported present (a bf16 'stand-in GPU'); ``Module.to`` / ``Tensor.to`` towards CUDA recorded and left on
    the CPU; every :data:`ENTRY_POINTS` call checks that its input batches were moved. Yields the :class:`Placement`."""
    seen = Placement()
    real_module_to, real_tensor_to = torch.nn.Module.to, torch.Tensor.to

    def module_to(self, *args, **kwargs):
        if _is_cuda(kwargs.get("device", args[0] if args else None)):
            seen.modules.append(self)
            return self
        return real_module_to(self, *args, **kwargs)

    def tensor_to(self, *args, **kwargs):
        if _is_cuda(kwargs.get("device", args[0] if args else None)):
            view = self.view_as(self)
            seen.tensors[id(view)] = weakref.ref(view)
            return view
        return real_tensor_to(self, *args, **kwargs)

    def watched(cls, name, positions):
        real = getattr(cls, name)

        def entry(self, *args, **kwargs):
            seen.calls[f"{cls.__name__}.{name}"] += 1
            for p in positions:
                if p < len(args) and isinstance(args[p], torch.Tensor) and not seen.moved(args[p]):
                    seen.stray.append(f"{cls.__name__}.{name} argument {p}")
            return real(self, *args, **kwargs)
        return entry

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        mp.setattr(torch.cuda, "get_device_name", lambda *a, **k: "stand-in GPU")
        mp.setattr(torch.nn.Module, "to", module_to)
        mp.setattr(torch.Tensor, "to", tensor_to)
        for (cls, name), positions in ENTRY_POINTS.items():
            mp.setattr(cls, name, watched(cls, name, positions))
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # the GPU's rule switches on
        try:
            yield seen
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _backbone(run_cfg) -> tuple[MMRModel, object]:
    """A freshly initialised (seeded) backbone and its tokenizer."""
    torch.manual_seed(0)
    return build_model(run_cfg.model)


@pytest.fixture(scope="module")
def tiny_vqa(synth_dir):
    """A tiny untrained classifier, its tokenizer, the train-answer vocabulary and 24 test records."""
    run_cfg = load_config("tiny", SMALL_MODEL)
    backbone, tokenizer = _backbone(run_cfg)
    records = load_task_records(synth_dir, "vqa")
    vocab = LabelVocab.build(record_target(r) for r in records if r.split == "train")
    model = PairClassifier(backbone, len(vocab)).eval()
    return run_cfg, model, tokenizer, vocab, [r for r in records if r.split == "test"][:24]


@pytest.fixture(scope="module")
def runs(tiny_vqa, tmp_path_factory):
    """An (untrained) VQA run and retrieval run on disk, as ``evaluate`` and ``predict`` load them."""
    run_cfg, model, _, vocab, _ = tiny_vqa
    vqa, retrieve = tmp_path_factory.mktemp("vqa"), tmp_path_factory.mktemp("retrieve")
    common = {"init": "scratch", "holdout": None}
    save_task_run(vqa, model, run_cfg, {"task": "vqa", "labels": list(vocab.labels),
                                        "finetune": asdict(FinetuneConfig(task="vqa")), **common})
    retrieval = RetrievalModel(_backbone(run_cfg)[0], run_cfg.model.projection_dim)
    save_task_run(retrieve, retrieval, run_cfg, {"task": "retrieve", "dim": run_cfg.model.projection_dim,
                                                 "finetune": asdict(FinetuneConfig(task="retrieve")), **common})
    return vqa, retrieve


CELLS = (Cell(), Cell(image=("gaussian_noise", 3)), Cell(text=("keyboard_typo", 3)), Cell(drop_image=True),
         Cell(shuffle_images=True))


def test_resolve_device_names_and_refusals(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="choose auto"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda", 1)


def test_predictor_moves_the_model_and_every_batch_and_predicts_as_on_the_cpu(tiny_vqa, synth_dir):
    _, model, tokenizer, vocab, records = tiny_vqa
    cpu = Predictor(model, tokenizer, vocab, synth_dir, records, batch_size=8, device="cpu")
    expected = [cpu.predict(cell)[0] for cell in CELLS]
    with pretend_cuda() as seen:
        predictor = Predictor(model, tokenizer, vocab, synth_dir, records, batch_size=8, device="cuda")
        got = [predictor.predict(cell)[0] for cell in CELLS]
    assert predictor.device == torch.device("cuda") and seen.modules == [model]  # moved once
    assert seen.calls["MMRModel.encode_image"] >= 2 and seen.calls["MMRModel.encode_text"] >= 2  # clean + perturbed
    assert seen.calls["MMRModel.fuse"] == len(CELLS) * 3  # 24 records in batches of 8, per cell
    assert seen.stray == []
    assert all(isinstance(g, np.ndarray) and np.array_equal(g, e) for g, e in zip(got, expected))


def test_cpu_device_gives_the_default_s_predictions(tiny_vqa, synth_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "auto" is the CPU, whatever the machine
    _, model, tokenizer, vocab, records = tiny_vqa
    default = Predictor(model, tokenizer, vocab, synth_dir, records)
    cpu = Predictor(model, tokenizer, vocab, synth_dir, records, device="cpu")
    assert default.device == cpu.device == torch.device("cpu")
    for cell in CELLS:
        assert np.array_equal(default.predict(cell)[0], cpu.predict(cell)[0])


def _without_placement(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("device", "precision")}


@pytest.mark.parametrize("which", ["vqa", "retrieve"])
def test_evaluate_runs_on_the_device_records_it_and_matches_the_cpu(runs, synth_dir, which):
    run = dict(zip(("vqa", "retrieve"), runs))[which]
    protocols = ("clean", "perturbed", "missing") if which == "vqa" else ("clean", "perturbed")
    settings = {"corruptions": ["gaussian_noise"], "text_perts": ["keyboard_typo"], "severities": (3,),
                "max_items": 24, "progress": False, "precision": "32-true", "batch_size": 8}
    expected = evaluate_run(run, synth_dir, protocols, device="cpu", **settings)
    assert expected["device"] == "cpu" and expected["precision"]["accelerator"] == "cpu"
    with pretend_cuda() as seen:
        results = evaluate_run(run, synth_dir, protocols, device="cuda", **settings)
    assert results["device"] == "cuda" and results["precision"]["accelerator"] == "gpu"
    assert results["precision"]["cuda_device"] == "stand-in GPU" and results["precision"]["resolved"] == "32-true"
    assert len(seen.modules) == 1 and seen.stray == []
    assert seen.calls["MMRModel.encode_image"] > 0 and seen.calls["MMRModel.encode_text"] > 0
    assert _without_placement(results) == _without_placement(expected)


def test_run_predictor_moves_the_model_and_every_batch(runs, tiny_vqa, synth_dir):
    """``predict`` of a VQA run and of a retrieval run; CUDA autocast leaves the stand-in's CPU math in fp32."""
    _, _, _, _, records = tiny_vqa
    rows = [{"image": r.image, "question": r.question, "text": r.question} for r in records[:6]]
    for run in runs:
        expected = RunPredictor.load(run, device="cpu", precision="32-true").predict(rows, root=synth_dir)
        with pretend_cuda() as seen:
            predictor = RunPredictor.load(run, device="cuda", precision="auto")
            got = predictor.predict(rows, root=synth_dir)
        assert predictor.device == torch.device("cuda") and predictor.precision == "bf16-mixed"  # the GPU's rule
        assert len(seen.modules) == 1 and seen.stray == [] and sum(seen.calls.values()) > 0
        assert got == expected


def test_probe_features_are_computed_on_the_training_device_and_cached_on_the_cpu(tiny_vqa, synth_dir, monkeypatch):
    run_cfg, model, tokenizer, vocab, records = tiny_vqa
    loader = DataLoader(TaskDataset(synth_dir, records, 64, 1), batch_size=8,
                        collate_fn=TaskCollator(tokenizer, run_cfg.model.max_text_length, vocab))
    expected = classifier_features(model, loader)
    assert feature_placement(FinetuneConfig(accelerator="cpu")) == (torch.device("cpu"), "32-true")
    with pretend_cuda() as seen:
        monkeypatch.setenv("LOCAL_RANK", "1")  # the second GPU's process of a multi-GPU run
        device, precision = feature_placement(FinetuneConfig(accelerator="gpu", precision="bf16-mixed"))
        assert (device, precision) == (torch.device("cuda", 1), "bf16-mixed")
        got = classifier_features(model, loader, device, "32-true")
    assert seen.modules == [model] and seen.calls["MMRModel.forward"] == 3 and seen.stray == []
    assert next(model.parameters()).device.type == "cpu"  # back on the CPU for Lightning
    assert all(g["features"].device.type == "cpu" and torch.equal(g["features"], e["features"])
               for g, e in zip(got, expected))


def test_retrieval_probe_features_are_computed_on_the_device_and_cached_on_the_cpu(tiny_vqa, synth_dir):
    run_cfg, _, tokenizer, _, _ = tiny_vqa
    model = RetrievalModel(_backbone(run_cfg)[0], run_cfg.model.projection_dim).eval()
    pairs = [r for r in load_pairs(synth_dir) if r.split == "train"][:16]
    loader = DataLoader(TaskDataset(synth_dir, pairs, 64, 1), batch_size=8,
                        collate_fn=PairCollator(tokenizer, run_cfg.model.max_text_length))
    expected = unimodal_features(model, loader)
    with pretend_cuda() as seen:
        got = unimodal_features(model, loader, torch.device("cuda"), "32-true")
    assert seen.modules == [model] and seen.calls["MMRModel.encode_image"] == 2 and seen.stray == []
    for g, e in zip(got, expected):
        assert g["images"] == e["images"]
        for key in ("image_feature", "text_feature"):
            assert g[key].device.type == "cpu" and torch.equal(g[key], e[key])


def test_predict_runs_at_the_hardware_rule_unless_told(runs, monkeypatch):
    """``predict``'s default precision is ``auto``, as ``evaluate``'s: bf16 only where the CPU has it natively."""
    from robust_mmr import hardware

    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(hardware, "native_cpu_bf16", lambda native=native: native)
        assert RunPredictor.load(runs[0], device="cpu").precision == expected
        assert RunPredictor.load(runs[0], device="cpu", precision="32-true").precision == "32-true"
    args = build_parser().parse_args(["predict", "r", "--input", "q.csv", "--out", "o"])
    assert args.precision == "auto"
