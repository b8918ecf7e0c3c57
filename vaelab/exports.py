"""`vaelab export RUN`: a run's decoder and encoder as files that run without vaelab.

    RUN/export/decoder.onnx | decoder.pt   z [B, latent] (, y int64 [B]) -> images [B, C, H, W] in [0, 1]
    RUN/export/encoder.onnx | encoder.pt   x [B, C, H, W] in [0, 1] (, y) -> mu, logvar [B, latent]

ONNX (opset of torch.onnx's dynamo exporter) runs in onnxruntime, in a browser with
onnxruntime-web, or anywhere ONNX does; TorchScript (.pt) runs in PyTorch with `torch.jit.load`
alone. Both take any batch size. `y`, the class index, is an input of conditional models only.
The decoder gives the Bernoulli means (the sigmoid of its logits): the images vaelab shows.
"""

import contextlib
import io
import logging
from pathlib import Path

import torch
from torch import nn

from vaelab import runs
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, make_folder
from vaelab.models import VAE
from vaelab.options import named

FORMATS = ("onnx", "torchscript")
PARTS = ("decoder", "encoder", "both")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class Decoder(nn.Module):
    """z (, y) -> images in [0, 1]. Of a vaelab.VAE it holds only the decoder, so the file carries only
    the decoder's weights; a model of your own is exported whole, through its decode()."""

    def __init__(self, model):
        super().__init__()
        self.vae = isinstance(model, VAE)
        self.part = model.decoder if self.vae else model

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.part(z, y) if self.vae else self.part.decode(z, y))


class Encoder(nn.Module):
    """x (, y) -> (mu, logvar), likewise only the encoder of a vaelab.VAE."""

    def __init__(self, model):
        super().__init__()
        self.vae = isinstance(model, VAE)
        self.part = model.encoder if self.vae else model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.part(x, y) if self.vae else self.part.encode(x, y)


def example_inputs(model, part: str, batch: int = 2) -> tuple:
    c = model.config
    first = torch.zeros(batch, c.latent_dim) if part == "decoder" else torch.rand(batch, *c.input_shape)
    return (first, torch.zeros(batch, dtype=torch.int64)) if c.num_classes else (first,)


def names(model, part: str) -> tuple[list[str], list[str]]:
    inputs = ["z" if part == "decoder" else "x"] + (["y"] if model.config.num_classes else [])
    return inputs, ["image"] if part == "decoder" else ["mu", "logvar"]


def export_part(model, part: str, fmt: str) -> bytes:
    """One half of `model` (in eval mode, on the CPU) as the bytes of one self-contained file in `fmt`."""
    wrapped = (Decoder if part == "decoder" else Encoder)(model).eval()
    inputs = example_inputs(model, part)
    if fmt == "torchscript":
        buffer = io.BytesIO()
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(wrapped, inputs), buffer)
        return buffer.getvalue()
    input_names, output_names = names(model, part)
    batch = torch.export.Dim("batch")
    quiet, logger = io.StringIO(), logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # notes about operators of other libraries; put back below
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # its progress lines
            program = torch.onnx.export(
                wrapped,
                inputs,
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=[{0: batch} for _ in inputs],
                verbose=False,
            )
    finally:
        logger.setLevel(level)
    return program.model_proto.SerializeToString()  # the weights inside: one file, no .onnx.data beside it


def export_run(run_dir, fmt: str = "onnx", part: str = "both", out=None, trust_code: bool = False) -> list[Path]:
    """Write the run's decoder and/or encoder in `fmt` to `out` (default RUN/export/), one file per
    part, each whole or not at all and never through a symbolic link; returns the paths."""
    if fmt not in FORMATS:
        raise VaelabError(f"{named('format')} is one of {', '.join(FORMATS)}, not {fmt!r}")
    if part not in PARTS:
        raise VaelabError(f"{named('part')} is one of {', '.join(PARTS)}, not {part!r}")
    if fmt == "onnx":
        try:
            import onnxscript  # noqa: F401 (torch.onnx's exporter needs it)
        except ImportError:
            raise VaelabError("ONNX export needs onnx and onnxscript: pip install 'vaelab[export]'") from None
    model, _ = runs.load_model(run_dir, trust_code=trust_code)
    parts = ("decoder", "encoder") if part == "both" else (part,)
    if out is None:
        return [runs.write_into(run_dir, export_part(model, p, fmt), runs.EXPORT, f"{p}{SUFFIX[fmt]}") for p in parts]
    folder = make_folder(out)
    written = []
    for p in parts:
        atomic_write(folder / f"{p}{SUFFIX[fmt]}", export_part(model, p, fmt))
        written.append(folder / f"{p}{SUFFIX[fmt]}")
    return written
