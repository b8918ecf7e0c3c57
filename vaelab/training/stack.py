"""N models of one shape as one: their weights stacked on a leading axis, one vmapped step for all.

A step of these small models mostly pays per-operation overhead (a CPU operator call, a GPU kernel
launch), which costs about the same for one run's tensors as for sixteen's. torch.func stacks the
models' weights ([N, ...] each, `stack_module_state`) and runs the model once over them
(`functional_call` under `vmap`): a Linear becomes one batched matrix product, a convolution one
grouped convolution, and N small steps become one wide one.

Each model's own parameters are then made to alias its slice of the stacked weights, and after
each backward its gradients its slice of the stacked gradients, so everything that reads a model (evaluation,
checkpoints, its Adam, gradient clipping) sees the ordinary module: Adam is elementwise, so one
Adam per run over its slices is that run's Adam, with its own learning rate.
"""

import copy
from contextlib import nullcontext

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Stack(nn.Module):
    """The models of a batch, called as one. `params` and `buffers` hold the stacked tensors; model
    r's parameter `name` is params[name][r] (the same memory), its gradient params[name].grad[r]
    once `share_grads` has run."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.base = [copy.deepcopy(models[0]).to("meta")]  # the code of the model (a list: not a submodule)
        self.models = nn.ModuleList(models)
        self.params, self.buffers = stack_module_state(list(models))
        for name, stacked in self.params.items():
            for r, model in enumerate(models):
                model.get_parameter(name).data = stacked.detach()[r]
        for name, stacked in self.buffers.items():
            for r, model in enumerate(models):
                model.get_buffer(name).data = stacked[r]

    def forward(self, x, y, eps):
        """(logits, mu, logvar, z) of every model, each [N, B, ...], for inputs [N, B, ...]."""

        def one(params, buffers, x, y, eps):
            return functional_call(self.base[0], (params, buffers), (x, y, eps))

        return vmap(one)(self.params, self.buffers, x, y, eps)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients, so that backward writes fresh ones instead of adding to old ones
        (an add per weight per step: a quarter of a CPU step)."""
        for stacked in self.params.values():
            stacked.grad = None
        for model in self.models:
            model.zero_grad(set_to_none=True)

    def share_grads(self) -> None:
        """Give each model its slice of the stacked gradients backward wrote (views: no copy). In a
        CUDA graph this runs once, at capture, and the views stay on the graph's gradient buffers."""
        for name, stacked in self.params.items():
            for r, model in enumerate(self.models):
                model.get_parameter(name).grad = None if stacked.grad is None else stacked.grad[r]


class Adams(list):
    """The runs' optimizers, in the batch's order, as one object for the Stepper (vaelab/training/speed.py);
    the step drops and shares the gradients itself (Stack.zero_grad, Stack.share_grads)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        for optimizer in self:
            optimizer.step()


def batched_step(
    stack: Stack,
    optimizers: Adams,
    inputs: tuple,
    beta,
    objective,
    clip_grads: list,
    mmd_weights: torch.Tensor,
    autocast=nullcontext,
    scaler=None,
) -> torch.Tensor:
    """train_step (vaelab/training/loop.py) for every run at once: inputs = (x, y, eps, prior_z),
    each [N, B, ...] (prior_z may be None); beta, the runs' KL weights [N] (a list or a tensor);
    `mmd_weights` [N]. Returns the objective's terms, [N, len(terms)], detached."""
    x, y, eps, prior_z = inputs
    beta = torch.as_tensor(beta, device=x.device)

    def terms_of(x, y, eps, prior_z, beta, mmd_weight, logits, mu, logvar, z):
        return objective(logits, x, mu, logvar, z, prior_z, beta, mmd_weight)

    with autocast():
        logits, mu, logvar, z = stack(x, y, eps)
        prior_dim = None if prior_z is None else 0
        terms = vmap(terms_of, in_dims=(0, 0, 0, prior_dim, 0, 0, 0, 0, 0, 0))(
            x, y, eps, prior_z, beta, mmd_weights, logits, mu, logvar, z
        )
    terms = terms.float()
    stack.zero_grad()
    terms[:, 0].sum().backward()  # the runs share no weight, so each gets its own loss's gradient
    stack.share_grads()
    if any(clip_grads):
        totals = []
        for model, clip, total in zip(stack.models, clip_grads, terms[:, 0], strict=True):
            if clip:  # as train_step: a non-finite gradient shows in the run's total
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                total = torch.where(torch.isfinite(norm), total, norm)
            totals.append(total)
        terms = torch.cat([torch.stack(totals)[:, None], terms[:, 1:]], dim=1)
    optimizers.step()
    return terms.detach()


def noise_generator(device: torch.device) -> torch.Generator:
    """A generator on `device` in the state of that device's default generator now: a run trained
    alone draws its noise from the default one, a run in a batch from this copy, so both draw the same."""
    generator = torch.Generator(device)
    generator.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return generator
