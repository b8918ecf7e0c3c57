"""How the training step runs (`--speed auto|eager|graph|compile`); the maths never changes.

    eager    the step as written in vaelab/training/loop.py (train_step), tensor by tensor
    graph    CUDA only: the whole step (forward, loss, backward, gradient clipping, Adam with
             capturable=True) captured once in a CUDA graph and replayed; batches are copied into
             its static input buffers. These models are limited by kernel-launch overhead on a
             GPU (a launch costs ~14 us; a step is hundreds of kernels), which replay removes.
             The first WARMUP steps, and those of the learning-rate warm-up (its lr changes),
             run eagerly on a side stream, as capture requires; they are real training steps.
             If capture fails, training goes on eagerly, with a notice.
    compile  torch.compile of the model (default mode): forward and backward compiled
    auto     graph on a single CUDA device; eager elsewhere. On the CPU, models with
             convolutions also switch to the channels-last layout, measured 17-22% faster per
             conv step on a 2-core x86 CPU (oneDNN), while torch.compile was measured slower
             there (see bench/README.md), so auto does not compile.

On the CPU, every mode also keeps freed tensor memory in the process (keep_freed_memory): with
glibc's default, each conv step's activation buffers (up to 13 MB at batch 128) were returned to
the system and faulted in again as zeroed pages, which on a 2-core machine cost 3-13 s of system
time per Fashion-MNIST epoch and made epoch times swing by 50% from run to run.

`--precision bf16` runs forward and loss under bfloat16 autocast (weights, Adam and the loss
sums stay float32); its effect on the test ELBO is measured in bench/README.md. `--precision fp16`
runs them under float16 autocast with a gradient scaler, for GPUs without bfloat16 (Colab's T4);
the scaler checks the gradients on the host, so fp16 runs eagerly, never in a CUDA graph.
"""

import ctypes
import logging
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch

from vaelab.config import PRECISIONS, SPEEDS
from vaelab.errors import VaelabError
from vaelab.options import as_given, named

log = logging.getLogger(__name__)
WARMUP = 3  # eager steps on a side stream before capture


@dataclass(frozen=True)
class Plan:
    """What `auto` (or the user) chose for this run."""

    mode: str  # eager | graph | compile
    channels_last: bool

    def describe(self) -> str:
        return self.mode + (", channels-last" if self.channels_last else "")


def has_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


def plan(speed: str, device: torch.device, model: torch.nn.Module, world: int = 1, precision: str = "fp32") -> Plan:
    """The mode for `speed` on `device`; refuses graph where it cannot run, and a precision the
    device lacks."""
    if speed not in SPEEDS:
        raise VaelabError(f"{named('speed')} is one of {', '.join(SPEEDS)}, not {speed!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise VaelabError(
            f"{as_given('precision', 'bf16')} needs bfloat16, which {torch.cuda.get_device_name(device)} lacks; "
            f"use {as_given('precision', 'fp16')} "
            f"(float16 with a gradient scaler) or fp32"
        )
    if precision == "fp16" and speed == "graph":
        raise VaelabError(
            f"{as_given('precision', 'fp16')} scales the gradients with a scaler that checks them on the host "
            "every step, "
            f"which a CUDA graph cannot replay; use {as_given('speed', 'auto')} (eager) with fp16, or "
            f"{as_given('precision', 'bf16')} with graph"
        )
    if speed == "graph" and device.type != "cuda":
        raise VaelabError(
            f"{as_given('speed', 'graph')} captures the step in a CUDA graph and needs a CUDA device; "
            f"on this machine use {as_given('speed', 'auto')} (or eager, compile)"
        )
    if speed == "graph" and world > 1:
        raise VaelabError(
            f"{as_given('speed', 'graph')} runs on one process; with several processes use {as_given('speed', 'auto')} "
            "(eager under DDP)"
        )
    if speed == "auto":
        if device.type == "cuda":
            return Plan("graph" if world == 1 and precision != "fp16" else "eager", False)
        return Plan("eager", device.type == "cpu" and has_convolutions(model))
    return Plan(speed, False)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MiB for reuse instead of unmapping them.

    PyTorch's CPU allocator is plain malloc; above the (adaptive) mmap threshold every activation
    buffer is a fresh mmap, zeroed by the kernel on first touch and unmapped when freed. Raising the
    threshold to glibc's maximum, and trimming the heap only past 1 GiB free, turns that into reuse.
    Process-wide and harmless to anything else; returns False where there is no glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def prepare(p: Plan, model: torch.nn.Module) -> None:
    """What a run changes outside the step, before its optimizer is built: the CPU allocator and
    the model's memory layout (in place)."""
    if next(model.parameters()).device.type == "cpu":
        keep_freed_memory()
    if p.channels_last:
        model.to(memory_format=torch.channels_last)


def capturable(p: Plan) -> bool:
    """Adam must keep its step count on the device for a graph to replay it."""
    return p.mode == "graph"


class Stepper:
    """Calls `step(model, optimizer, inputs, beta, autocast=...)` the way the plan says, where
    `inputs` is a tuple of the batch's tensors (images, labels, noise), and returns the step's
    loss-terms tensor. One object per run: a captured graph is replayed every epoch."""

    def __init__(self, step, p: Plan, model, optimizer, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise VaelabError(f"{named('precision')} is one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.plan, self.model, self.optimizer = p, model, optimizer
        self.device = next(model.parameters()).device
        # float16's range is narrow: the loss is scaled up before backward, the gradients down before
        # Adam, and steps whose gradients overflow are skipped (Micikevicius et al. 2018, Mixed Precision Training)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        self.step = partial(step, autocast=autocast_for(precision, self.device), scaler=self.scaler)
        if p.mode == "compile":  # the model (forward and, through AOTAutograd, backward); Adam stays
            self.model = torch.compile(model)  # eager, so a changing lr or beta never recompiles
        self.done, self.graph, self.static = 0, None, None

    def __call__(self, inputs: tuple, beta: float, steady: bool = True) -> torch.Tensor:
        """One step; `steady` says the learning rate stays as it is from now on (a graph bakes it in)."""
        if self.plan.channels_last:
            inputs = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
        if self.plan.mode != "graph":
            return self.step(self.model, self.optimizer, inputs, beta)
        if self.graph is not None:
            return self.replay(inputs, beta)
        if self.done < WARMUP or not steady:
            self.done += 1
            return self.side_stream_step(inputs, beta)
        try:
            return self.capture(inputs, beta)
        except Exception as e:  # anything capture cannot handle: carry on eagerly
            torch.cuda.synchronize(self.device)
            log.warning(f"note: CUDA graph capture failed ({type(e).__name__}: {e}); training goes on in eager mode")
            self.plan = Plan("eager", False)
            return self.step(self.model, self.optimizer, inputs, beta)

    def side_stream_step(self, inputs: tuple, beta):
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            loss = self.step(self.model, self.optimizer, inputs, torch.tensor(beta, device=self.device))
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return loss

    def capture(self, inputs: tuple, beta):
        """Record one step on static buffers, then replay it for this batch."""
        self.static = {
            "inputs": tuple(None if t is None else t.clone() for t in inputs),
            "beta": torch.tensor(beta, device=self.device),
        }
        s = self.static
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # gradients are allocated in the graph's pool
        with torch.cuda.graph(graph):
            s["loss"] = self.step(self.model, self.optimizer, s["inputs"], s["beta"])
        self.graph = graph
        graph.replay()  # capture only records: this runs the batch's step
        return s["loss"].clone()

    def replay(self, inputs: tuple, beta):
        s = self.static
        for buffer, t in zip(s["inputs"], inputs, strict=True):
            if buffer is not None:
                buffer.copy_(t)
        if isinstance(beta, list):  # one per run of a batch (vaelab/training/batched.py)
            s["beta"].copy_(torch.tensor(beta))
        else:
            s["beta"].fill_(beta)
        self.graph.replay()
        return s["loss"].clone()  # the next replay overwrites the buffer


def autocast_for(precision: str, device: torch.device):
    """A context-manager factory for the step's forward and loss: bfloat16 or float16 autocast (its
    cache off, as CUDA graphs require) or nothing."""
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device.type, dtype=dtype, cache_enabled=False)


def scaler_state(stepper: "Stepper") -> dict:
    """What a checkpoint keeps of an fp16 run's gradient scaler (nothing for other precisions)."""
    if stepper.scaler is None:
        return {}
    state = stepper.scaler.state_dict()
    return {"scaler": {"scale": float(state["scale"]), "growth_tracker": int(state["_growth_tracker"])}}


def load_scaler(stepper: "Stepper", position: dict) -> None:
    """Put an fp16 run's gradient scaler back as its checkpoint kept it."""
    saved = position.get("scaler")
    if stepper.scaler is not None and saved is not None:
        state = stepper.scaler.state_dict()
        stepper.scaler.load_state_dict({**state, "scale": saved["scale"], "_growth_tracker": saved["growth_tracker"]})
