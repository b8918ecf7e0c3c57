"""Speed modes change how the step runs, never its maths: same seed, same losses and weights."""

import sys

import pytest
import torch
from safetensors.torch import load_file

from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model, make_config
from vaelab.runs import read_metrics
from vaelab.training import resume, train
from vaelab.training.speed import keep_freed_memory, plan

CUDA = torch.cuda.is_available()


def run(tmp_path, name, **settings):
    cfg = TrainConfig(dataset="mnist-sample", epochs=1, **settings)
    out = train(cfg, out=str(tmp_path / name), progress=False)
    return read_metrics(out)[-1], load_file(str(out / "model.safetensors"))


def assert_same(a, b, rel, weights=True):
    """Same losses; and same weights, unless the two runs add up floats in another order: Adam
    then turns differences of 1e-12 in a near-zero gradient into whole steps of the learning rate."""
    (row_a, weights_a), (row_b, weights_b) = a, b
    for key in ("train_total", "train_recon", "train_kl", "test_total", "test_elbo"):
        assert row_a[key] == pytest.approx(row_b[key], rel=rel), key
    for key in weights_a if weights else ():
        scale = weights_a[key].abs().max().item()
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=rel * scale, msg=key)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_the_allocator_setting_of_cpu_runs():
    assert keep_freed_memory() is True  # mallopt returns 0 for a value out of its range


def test_auto_on_the_cpu_is_the_eager_step_in_channels_last_layout(tmp_path):
    conv = build_model("conv", make_config("conv", (1, 28, 28), 10))
    assert plan("auto", torch.device("cpu"), conv).describe() == "eager, channels-last"
    mlp = build_model("mlp", make_config("mlp", (1, 28, 28), 10))
    assert plan("auto", torch.device("cpu"), mlp).describe() == "eager"
    eager, auto = (run(tmp_path, speed, model="conv", seed=3, speed=speed) for speed in ("eager", "auto"))
    assert_same(eager, auto, rel=1e-3, weights=False)  # 31 Adam steps on real digits; another summation order


def test_compile_gives_the_eager_losses(tmp_path):
    eager, compiled = (run(tmp_path, speed, model="mlp", speed=speed) for speed in ("eager", "compile"))
    assert_same(eager, compiled, rel=1e-4)


def test_bf16_autocast_trains_to_nearly_the_same_loss(tmp_path):
    (fp32, _), (bf16, _) = (run(tmp_path, p, model="mlp", precision=p) for p in ("fp32", "bf16"))
    assert bf16["test_elbo"] == pytest.approx(fp32["test_elbo"], rel=0.02)
    assert bf16["test_elbo"] != fp32["test_elbo"]  # it did run in bfloat16


def test_graph_needs_cuda_and_says_so():
    model = build_model("mlp", make_config("mlp", (1, 28, 28), 10))
    with pytest.raises(VaelabError, match="needs a CUDA device; on this machine use speed='auto'"):
        plan("graph", torch.device("cpu"), model)
    with pytest.raises(VaelabError, match="one process"):
        plan("graph", torch.device("cuda"), model, world=2)
    assert plan("auto", torch.device("cuda"), model).mode == "graph"
    assert plan("auto", torch.device("cuda"), model, world=2).mode == "eager"


def test_a_run_resumes_under_another_speed_mode(tmp_path):
    cfg = TrainConfig(model="conv", dataset="mnist-sample", epochs=1, speed="eager")
    out = train(cfg, out=str(tmp_path / "run"), progress=False)
    resume(out, epochs=2, speed="auto", progress=False)
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_total"] < rows[0]["train_total"]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("model", ["mlp", "conv", "cvae"])
def test_cuda_graph_gives_the_eager_losses(tmp_path, model):
    # a 10-step lr warm-up: capture after it, then 21 of the epoch's 31 steps are replays
    eager, graph = (
        run(tmp_path, speed, model=model, speed=speed, device="cuda", lr_warmup=10) for speed in ("eager", "graph")
    )
    assert_same(eager, graph, rel=1e-4)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_graph_follows_the_kl_warmup_and_clipping(tmp_path):
    settings = dict(model="mlp", kl_warmup=1.0, clip_grad=5.0, device="cuda", lr_warmup=10)
    eager, graph = (run(tmp_path, speed, speed=speed, **settings) for speed in ("eager", "graph"))
    assert_same(eager, graph, rel=1e-4)


def test_fp16_scales_the_gradients_and_resumes_with_its_scaler(tmp_path):
    """float16 autocast with a gradient scaler (Colab's T4 has no bfloat16): it trains near fp32, and
    a run stopped after an epoch resumes to the same weights, its scaler's scale and count kept."""
    settings = dict(model="mlp", dataset="mnist-sample", batch_size=250, precision="fp16")
    straight = train(TrainConfig(**settings, epochs=2), out=str(tmp_path / "straight"), progress=False)
    halted = train(TrainConfig(**settings, epochs=1), out=str(tmp_path / "halted"), progress=False)
    resume(halted, epochs=2, progress=False)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(halted / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    fp32 = train(TrainConfig(**{**settings, "precision": "fp32"}, epochs=2), out=str(tmp_path / "fp32"), progress=False)
    assert read_metrics(straight)[-1]["test_elbo"] == pytest.approx(read_metrics(fp32)[-1]["test_elbo"], abs=15)


def test_fp16_never_runs_in_a_cuda_graph():
    model = build_model("mlp", make_config("mlp", (1, 28, 28), 10))
    with pytest.raises(VaelabError, match="precision='fp16' scales the gradients"):
        plan("graph", torch.device("cuda"), model, precision="fp16")
    assert plan("auto", torch.device("cuda"), model, precision="fp16").mode == "eager"
