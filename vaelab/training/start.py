"""Starting and continuing a run: everything is checked, then the run folder is made (or locked),
then the loop (vaelab/training/loop.py) trains.
"""

from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

from vaelab import runs
from vaelab.config import RESUME_OVERRIDES, SAVED_BEFORE, TrainConfig
from vaelab.data import ImageData, load_dataset
from vaelab.device import env_rank, resolve_device
from vaelab.errors import VaelabError
from vaelab.models import build_model, custom, get_preset, make_config
from vaelab.options import check_values, named
from vaelab.training import distributed
from vaelab.training.callbacks import check_callbacks
from vaelab.training.loop import check_batch_fits, fit
from vaelab.training.stopping import StopSignals
from vaelab.training.trackers import TensorBoard


def train(
    cfg: TrainConfig,
    model_options: dict | None = None,
    *,
    out: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model: torch.nn.Module | None = None,
    command=None,
    callbacks=(),
    data: ImageData | None = None,
) -> Path:
    """Train a new model and write its run folder; returns the folder. `model` is a module of your
    own that follows the model interface (then cfg.model is "custom"); `data`, the data set when it
    is not cfg.dataset's files (data given in memory); `command`, what config.json
    records as the command that started the run (default: this process's command line); `callbacks`,
    vaelab.Callback objects told of each step, epoch and the end."""
    callbacks = check_callbacks(callbacks)
    with StopSignals() as stop:  # from here on, Ctrl-C ends in a checkpoint
        ranks, device = distributed.setup(resolve_device(cfg.device))
        torch.manual_seed(cfg.seed)
        data = data if data is not None else load_dataset(cfg.dataset, cfg.data_dir)
        model = new_model(cfg, model_options, data, model).to(device)
        distributed.check_batch(cfg.batch_size, ranks)
        check_batch_fits(cfg.batch_size, len(data.train_x))  # everything is checked before the folder is touched
        run_dir = None
        if ranks.main:
            run_dir = runs.new_run_dir(cfg.model, cfg.dataset, out, overwrite)
        run_dir = Path(distributed.share(str(run_dir), ranks))
        with runs.RunLock(run_dir) if ranks.main else nullcontext():
            if ranks.main:
                runs.clear_run(run_dir)  # with --overwrite: the earlier run's files, its checkpoint first
                runs.write_config(run_dir, runs.describe(cfg, model, data, device, ranks.world, command))
            return fit(cfg, model, data, run_dir, stop, ranks, progress=progress, callbacks=callbacks)


def new_model(cfg: TrainConfig, model_options: dict | None, data: ImageData, model=None) -> torch.nn.Module:
    """The model to train: the preset cfg.model for this data, or your own module, checked."""
    if cfg.model == custom.NAME:
        if model is None:
            raise VaelabError(
                "model 'custom' is a module of your own: train it from Python, "
                "vaelab.train(model=YourModel(config), dataset=...)"
            )
        custom.check(model, data)
        return model
    if model is not None:
        raise VaelabError(f"a model module was given with model '{cfg.model}'; give one or the other")
    if get_preset(cfg.model).conditional and not data.labelled:
        raise VaelabError(
            f"model '{cfg.model}' is conditional and needs labels, but {cfg.dataset} has "
            f"none; put the images in one sub-folder per class, or use mlp or conv"
        )
    config = make_config(cfg.model, data.image_shape, data.num_classes, **(model_options or {}))
    return build_model(cfg.model, config)


def resume(
    run_dir: str | Path,
    progress: bool = True,
    model: torch.nn.Module | None = None,
    callbacks=(),
    trust_code: bool = False,
    data: ImageData | None = None,
    **overrides,
) -> Path:
    """Continue a run from its last checkpoint; `overrides` may extend the epochs, or change the
    learning rate or gradient clipping (e.g. after a divergence). `model`: a module of your own to
    continue, when its classes cannot be imported; `trust_code`, to let a run of your own model import
    the module its classes come from (vaelab/models/custom.py)."""
    unknown = set(overrides) - set(RESUME_OVERRIDES)
    if unknown:
        allowed = ", ".join(named(k) for k in RESUME_OVERRIDES)
        raise VaelabError(
            f"{named('resume')} continues a run with its own settings; only {allowed} may change, "
            f"not {', '.join(sorted(unknown))}"
        )
    check_values(TrainConfig, {k: v for k, v in overrides.items() if v is not None})  # before anything is read
    run_dir = runs.run_folder(run_dir)
    callbacks = check_callbacks(callbacks)
    if (run_dir / runs.TENSORBOARD).is_dir() and not any(isinstance(c, TensorBoard) for c in callbacks):
        callbacks.append(TensorBoard())  # a run that logged to TensorBoard goes on logging there
    main = env_rank() == 0 or distributed.alone()
    with runs.RunLock(run_dir) if main else nullcontext():  # one writer; the others are refused at once
        if main:
            runs.recover(run_dir)  # an epoch's files left half-replaced by a kill are completed first
        if not (run_dir / runs.CHECKPOINT).is_file():
            raise VaelabError(
                f"{run_dir} has no checkpoint yet (it stopped before its first one); "
                f"start again with `vaelab train ... --out {run_dir} --overwrite`"
            )
        saved = runs.read_config(run_dir)
        cfg = resumed_config(saved, overrides, run_dir / runs.CONFIG)
        with StopSignals() as stop:
            ranks, device = distributed.setup(resolve_device(cfg.device))
            distributed.check_batch(cfg.batch_size, ranks)
            distributed.share(None, ranks)  # the others wait until rank 0 has completed the folder
            torch.manual_seed(cfg.seed)
            data = data if data is not None else load_dataset(cfg.dataset, cfg.data_dir)
            model = (runs.rebuild(saved, run_dir, trust_code) if model is None else model).to(device)
            changed = {**saved, "train": asdict(cfg)} if asdict(cfg) != saved["train"] else None
            return fit(
                cfg,
                model,
                data,
                run_dir,
                stop,
                ranks,
                progress=progress,
                resume=True,
                config=changed,
                callbacks=callbacks,
            )


def resumed_config(saved: dict, overrides: dict, path: Path) -> TrainConfig:
    """The saved settings with `overrides`; they reach config.json with the first epoch that
    finishes under them (a new --lr that diverges at once is never saved)."""
    try:
        given = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig(**{**SAVED_BEFORE, **saved["train"], **given})
    except TypeError as e:  # a setting this vaelab does not know
        raise VaelabError(
            f"{path}: the training settings do not fit this vaelab ({e}): "
            f"resume it with the vaelab version that wrote it"
        ) from None
