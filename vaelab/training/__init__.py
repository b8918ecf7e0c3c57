"""Training: a run is started or continued, and the loop trains it.

    start.py         train and resume: every setting checked, then the run folder made or locked
    loop.py          `fit`, the loop, and the step it repeats          (private to this folder)
    schedule.py      the learning-rate and KL-weight warm-ups           (private)
    state.py         what a checkpoint restores, checked                (private)
    advice.py        what training says after a divergence or a collapse (private)
    speed.py         how the step runs: eager, CUDA graph, compile, bf16 (private)
    stopping.py      Ctrl-C and SIGTERM ending in a checkpoint           (private)
    batched.py       many runs of one shape trained as one model, each its own run (a sweep's)
    stack.py         the models of a batch stacked, and the one step they share  (private)
    distributed.py   several processes: torch.distributed, DDP and the launcher
    callbacks.py     `Callback`: what training tells the world as it goes, and its checks
    trackers.py      TensorBoard, Weights & Biases and MLflow as callbacks

Modules outside this folder import from here only; the tests check it.
"""

from vaelab.device import env_rank, launched
from vaelab.training.batched import batch_key, resume_batched, saved_position, train_batched
from vaelab.training.callbacks import Callback
from vaelab.training.distributed import SWEEP_TIMEOUT, each_rank_alone, gather, join, launch, teardown
from vaelab.training.start import resume, train
from vaelab.training.stopping import Diverged
from vaelab.training.trackers import MLflowCallback, TensorBoard, WandbCallback

__all__ = [
    "SWEEP_TIMEOUT",
    "Callback",
    "Diverged",
    "MLflowCallback",
    "TensorBoard",
    "WandbCallback",
    "batch_key",
    "each_rank_alone",
    "env_rank",
    "gather",
    "join",
    "launch",
    "launched",
    "resume",
    "resume_batched",
    "saved_position",
    "teardown",
    "train",
    "train_batched",
]
