"""What a checkpoint restores besides the weights: the random generators' states, and the layout
of Adam's moments."""

import torch

from vaelab.errors import VaelabError


def rng_state(generator: torch.Generator, device) -> dict:
    state = {"torch": torch.get_rng_state(), "order": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, generator: torch.Generator, device) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["order"])
    if device.type == "cuda" and "cuda" in state:
        try:
            torch.cuda.set_rng_state(state["cuda"], device)
        except (RuntimeError, TypeError) as e:
            raise VaelabError(
                f"the checkpoint's CUDA generator state is not one this GPU takes ({e}): "
                f"the file is damaged; restore it from a copy, or train the run again"
            ) from None


def match_layouts(optimizer) -> None:
    """Give Adam's loaded moments their parameter's memory layout (channels-last or not): the
    fused kernel walks parameter and moments in step, so their strides must agree."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(value)
