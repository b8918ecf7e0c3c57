"""A finished (or stopped) run, loaded from its folder alone: its config, the model in eval mode,
the metrics; the data set and the test set's codes are loaded when first asked for.

`Run.open` is the one way a run is loaded: the report, the comparison, the evaluation, the explorer
and the notebook's `vaelab.Run` (a subclass with one method per figure) all use it.
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from vaelab.data import load_dataset
from vaelab.device import resolve_device
from vaelab.errors import VaelabError
from vaelab.latent import encode_set
from vaelab.losses import Objective
from vaelab.models import build_model, custom
from vaelab.runs import checks
from vaelab.runs.folder import CONFIG, WEIGHTS, read_config, read_metrics, run_folder
from vaelab.runs.weights import load_weights


def load_model(
    run_dir: Path, device: str | torch.device = "cpu", weights: str = WEIGHTS, model=None, trust_code: bool = False
):
    """(model, run_config) rebuilt from a run folder alone, in eval mode; `model`, when given, is
    filled with the weights instead (a model of your own whose classes cannot be imported).
    `trust_code`: a run of your own model may import the module its classes come from (see
    vaelab/models/custom.py)."""
    run_dir = run_folder(run_dir)
    device = device if isinstance(device, torch.device) else resolve_device(device)  # checked before any work
    config = read_config(run_dir)
    model = rebuild(config, run_dir, trust_code) if model is None else model
    load_weights(model, config["model"], run_dir / weights)
    return model.to(device).eval(), config


def rebuild(config: dict, run_dir: Path, trust_code: bool = False) -> torch.nn.Module:
    """The untrained model a run's config.json describes (your own model: from its classes)."""
    if config["model"] == custom.NAME:
        return custom.build(config["custom"], config["model_config"], trust_code)
    try:
        return build_model(config["model"], config["model_config"])
    except VaelabError as e:
        raise VaelabError(
            f"{Path(run_dir) / CONFIG}: its model cannot be built ({e}); the file was edited or "
            f"damaged: {checks.RESTORE}"
        ) from None


# ---- a finished run, loaded --------------------------------------------------------------------


@dataclass(eq=False)
class Run:
    """A run folder read once: its config, the model in eval mode and the metrics; the data set
    and the test set's codes are loaded when first asked for. `Run.open(folder)` makes one."""

    dir: Path
    config: dict
    model: torch.nn.Module
    rows: list = field(default_factory=list)
    given_data: object = field(default=None, repr=False)

    @classmethod
    def open(cls, run_dir, device: str | torch.device = "cpu", data=None, model=None, trust_code: bool = False):
        """The run in `run_dir`, from its folder alone; `data` shares an already loaded data set,
        `model` is one to fill with the weights, `trust_code` lets a run of your own model import
        its classes (see load_model)."""
        model, config = load_model(run_dir, device, model=model, trust_code=trust_code)
        return cls(Path(run_dir), config, model, read_metrics(run_dir), data)

    @cached_property
    def data(self):
        """The run's data set (vaelab.data.ImageData), found as training found it."""
        if self.given_data is not None:
            return self.given_data
        data = load_dataset(self.config["train"]["dataset"], self.config["train"]["data_dir"])
        saved = self.config["data"]
        if list(data.classes) != saved["classes"] or list(data.image_shape) != saved["image_shape"]:
            raise VaelabError(
                f"{self.dir / CONFIG} says the run's data have classes {saved['classes']} and images "
                f"{saved['image_shape']}, but {data.name} has {list(data.classes)} and {list(data.image_shape)}: "
                f"the file was edited or the data set changed since training; {checks.RESTORE}"
            )
        return data

    @cached_property
    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) [N_test, latent_dim] of q(z|x) for every test image, encoded once."""
        return encode_set(self.model, self.data.test_x, self.data.test_y)

    @property
    def mu(self) -> np.ndarray:
        return self.codes[0]

    @property
    def logvar(self) -> np.ndarray:
        return self.codes[1]

    @property
    def classes(self) -> list[str]:
        return self.config["data"]["classes"]

    @property
    def conditional(self) -> bool:
        return self.model.config.num_classes > 0

    @property
    def objective(self) -> Objective:
        """What the run minimised (vaelab.losses.Objective), from its training settings."""
        return Objective.from_settings(self.config["train"])

    @property
    def seconds_per_epoch(self) -> float:
        """The mean seconds of its epochs (training and the test evaluation), on its own device."""
        return sum(r["seconds"] for r in self.rows) / len(self.rows) if self.rows else float("nan")


def open_run(run_dir, device: str | torch.device = "cpu", data=None, model=None, trust_code: bool = False) -> Run:
    """`Run.open`: a finished (or stopped) run from its folder alone."""
    return Run.open(run_dir, device, data, model, trust_code)
