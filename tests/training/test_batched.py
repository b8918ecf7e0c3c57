"""Runs trained as one batched model are the runs trained alone: same weights, metrics and folder.

Tolerance: the batched step computes each run's matrix products and convolutions as one batched
(grouped) operation, which may sum in another order, so values agree to float32 rounding carried
through a few steps: 1e-4 relative on every metric, and on every weight tensor and Adam moment
1e-4 in norm relative to the tensor's norm (measured on a 2-core x86 CPU: up to 3e-7 relative on
the metrics, 1e-5 on a conv gradient's moment; the mlp often bit for bit).

One tensor can be further apart than that, and is as far apart from itself: the MMD cvae's
decoder weights that multiply z. After 8 steps its codes carry nothing yet (z is the prior's noise),
so their gradient sum_b delta_b z_b nearly cancels and its rounding grows: its Adam moments were
1.4e-4 and 2.3e-4 apart, batched and alone at 1 thread, and the run alone at 1 thread and at 2
threads is apart by exactly as much. So a checkpoint tensor may differ by up to twice what the run
alone differs from itself under another thread count (trained in the test), at most 1e-3.
"""

from dataclasses import replace

import pytest
import torch

from vaelab.config import TrainConfig
from vaelab.data import ImageData
from vaelab.runs import CHECKPOINT, WEIGHTS, read_metrics, read_safetensors
from vaelab.training import resume, train
from vaelab.training.batched import train_batched

RTOL = 1e-4
CAP = 1e-3  # the most the float32 floor may widen a bound: a real fault (other noise, a lost step) is far above
CASES = {  # model -> the settings of the second run, beside a first with the defaults and seed 0
    "mlp": dict(seed=1, beta=2.0, lr=2e-3, clip_grad=5.0, kl_warmup=1.0, lr_warmup=3),
    "conv": dict(seed=1, lr=5e-4, binarize="dynamic"),  # a fresh Bernoulli draw per batch: the run's own noise
    "cvae": dict(seed=2, objective="mmd", mmd_weight=100.0),  # the prior draws too; its own MMD weight
}


@pytest.fixture(scope="module")
def small(sample):
    """512 training and 200 test images of the sample: 8 steps of 64 per epoch."""
    s = sample
    return ImageData(s.name, s.train_x[:512], s.train_y[:512], s.test_x[:200], s.test_y[:200], s.classes, s.source)


def settings(model: str, device: str = "cpu", speed: str = "eager") -> list[TrainConfig]:
    """The two runs of a case: the defaults with seed 0, and CASES[model] (sharing what a batch shares)."""
    base = TrainConfig(model=model, dataset="mnist-sample", epochs=1, batch_size=64, device=device, speed=speed)
    second = replace(base, **CASES[model])
    return [replace(base, binarize=second.binarize, objective=second.objective), second]


def assert_same_run(batched, alone, floor=None):
    """Every metric of every epoch, the weights and Adam's moments agree within the tolerance, or
    within twice the distance from `alone` of `floor`, the run alone under another thread count."""
    slack = read_safetensors(floor / CHECKPOINT)[0] if floor else {}
    rows, expected = read_metrics(batched), read_metrics(alone)
    assert len(rows) == len(expected) > 0
    for row, want in zip(rows, expected, strict=True):
        for key in want:
            if key.startswith(("train_", "test_")):
                assert row[key] == pytest.approx(want[key], rel=RTOL), (key, row[key], want[key])
    for name in (WEIGHTS, CHECKPOINT):
        got, want = read_safetensors(batched / name)[0], read_safetensors(alone / name)[0]
        assert got.keys() == want.keys()
        for key, tensor in want.items():
            if tensor.is_floating_point():
                error = distance(got[key], tensor)
                bound = max(RTOL, min(CAP, 2 * distance(slack[key], tensor))) if name == CHECKPOINT and slack else RTOL
                assert error < bound, (name, key, error, bound)
            elif not key.startswith("meta"):  # generator states, Adam's step counts
                assert torch.equal(got[key], tensor), (name, key)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b|, the norms of the whole tensors."""
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def trained_on_other_threads(cfg, out, data):
    """The run alone again, with 1 thread where torch has more and 2 where it has 1: the same
    run summed in another order, whose distance is the float32 floor of this run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        train(cfg, {}, out=str(out), progress=False, data=data)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("model", sorted(CASES))
def test_a_run_in_a_batch_is_the_run_trained_alone(model, small, tmp_path):
    cfgs = settings(model)
    outcome = train_batched(cfgs, [{}, {}], [tmp_path / "b0", tmp_path / "b1"], progress=False, data=small)
    assert outcome == [(tmp_path / "b0", None), (tmp_path / "b1", None)]
    for i, cfg in enumerate(cfgs):
        train(cfg, {}, out=str(tmp_path / f"a{i}"), progress=False, data=small)
        floor = trained_on_other_threads(cfg, tmp_path / f"t{i}", small)
        assert_same_run(tmp_path / f"b{i}", tmp_path / f"a{i}", floor)
    first, second = (read_metrics(tmp_path / f"b{i}")[-1]["test_elbo"] for i in (0, 1))
    assert first != second  # two runs, not one run twice


def test_a_batched_run_resumes_alone_as_if_it_had_trained_alone(small, tmp_path):
    """Its checkpoint keeps its own generators' states where a lone run keeps the default ones."""
    cfgs = settings("mlp")
    train_batched(cfgs, [{}, {}], [tmp_path / "b0", tmp_path / "b1"], progress=False, data=small)
    resume(tmp_path / "b1", progress=False, data=small, epochs=2)
    train(replace(cfgs[1], epochs=2), {}, out=str(tmp_path / "a1"), progress=False, data=small)
    assert_same_run(tmp_path / "b1", tmp_path / "a1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph mode needs a CUDA GPU")
@pytest.mark.parametrize("model", sorted(CASES))
def test_a_run_in_a_batch_is_the_run_alone_in_cuda_graph_mode(model, small, tmp_path):
    """On a GPU, both replay their step from a CUDA graph (TF32 off: both in full float32)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cfgs = [replace(c, epochs=2) for c in settings(model, device="cuda", speed="graph")]
    train_batched(cfgs, [{}, {}], [tmp_path / "b0", tmp_path / "b1"], progress=False, data=small)
    for i, cfg in enumerate(cfgs):
        train(cfg, {}, out=str(tmp_path / f"a{i}"), progress=False, data=small)
        assert_same_run(tmp_path / f"b{i}", tmp_path / f"a{i}")


@pytest.mark.slow
def test_a_collapse_is_named_for_its_own_run_only(sample, tmp_path, capsys):
    """beta 300 drives the KL to 0 in one epoch on the sample (tests/training/test_train.py); its
    neighbour in the batch, beta 1, keeps its code, and only the collapsed run is named."""
    base = TrainConfig(model="mlp", dataset="mnist-sample", epochs=1)
    runs = [tmp_path / "beta-1", tmp_path / "beta-300"]
    train_batched([base, replace(base, beta=300.0)], [{}, {}], runs, progress=False, data=sample)
    printed = capsys.readouterr().out
    healthy, collapsed = (read_metrics(run)[-1]["test_kl"] for run in runs)
    assert collapsed < 0.05 < 1 < healthy
    (notice,) = [line for line in printed.splitlines() if "the posterior has collapsed" in line]
    assert repr(str(runs[1])) in notice and repr(str(runs[0])) not in notice
