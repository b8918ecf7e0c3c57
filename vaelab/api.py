"""The Python API, for notebooks and scripts: train, resume, load, evaluate, compare and sweep, and
a run object with one method per figure.

    import vaelab
    run = vaelab.train(model="mlp", dataset="mnist-sample", epochs=5)
    run.history["test_elbo"]        # per-epoch metrics, like Keras' History
    run.scatter()                   # figures show inline in Jupyter; fig.savefig("x.png") saves one
    run = vaelab.load(run.dir)      # the same run again, from its folder alone

Every function here calls the library functions the CLI calls (training, vaelab/report/figures.py,
evaluation, the report), so a notebook and the shell give the same results and write the same
run folder.
"""

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.log import verbosity
from vaelab.models import custom
from vaelab.notebook import Run

if TYPE_CHECKING:
    from torch import nn


# ---- functions -------------------------------------------------------------------------------------


_T = TrainConfig()  # every training setting's default, written once: in vaelab/config.py


def train(
    model: "str | nn.Module" = "conv",
    dataset="mnist",
    *,
    epochs: int = _T.epochs,
    batch_size: int = _T.batch_size,
    lr: float = _T.lr,
    lr_warmup: int = _T.lr_warmup,
    beta: float = _T.beta,
    kl_warmup: float = _T.kl_warmup,
    objective: str = _T.objective,
    mmd_weight: float = _T.mmd_weight,
    mmd_codes: str = _T.mmd_codes,
    clip_grad: float | None = _T.clip_grad,
    likelihood: str = _T.likelihood,
    gaussian_std: float = _T.gaussian_std,
    kl: str = _T.kl,
    binarize: str = _T.binarize,
    seed: int = _T.seed,
    device: str = _T.device,
    eval_batch_size: int = _T.eval_batch_size,
    speed: str = _T.speed,
    precision: str = _T.precision,
    data_dir: str | None = _T.data_dir,
    latent_dim: int | None = None,
    hidden_dim: int | None = None,
    hidden_layers: int | None = None,
    activation: str | None = None,
    dense_dim: int | None = None,
    channels: tuple[int, ...] | None = None,
    last_stride: int | None = None,
    label_merge: str | None = None,
    out=None,
    overwrite: bool = False,
    progress: bool = True,
    verbose: int | bool | None = None,
    callbacks=(),
    **unknown,
) -> "Run":
    """Train a VAE and return its run (a folder on disk, and the model, data and history in memory).

    model: a preset name (vaelab.MODELS: "mlp", "conv", "cvae", ...) or a module of your own that
        follows the model interface (vaelab.VAE(config, Encoder(config), Decoder(config))).
    dataset: a data set's name ("mnist", "fashion-mnist", "cifar10", "mnist-sample"), your images
        ("folder:PATH", "npz:FILE", Keras's x_train/y_train/x_test/y_test layout too), or data in
        memory: numpy arrays or tensors x, (x, y), ((x_train, y_train), (x_test, y_test)), a dict of
        them, a torch Dataset or DataLoader (without a test split a seeded 10% is held out).
    out, overwrite: the run folder (default runs/MODEL-DATASET-TIMESTAMP), and whether to replace one.
    progress: a progress bar; verbose: 0 warnings only, 1 a line per epoch (the default), 2 everything;
    callbacks: vaelab.Callback objects (vaelab.TensorBoard(), your own).

    Examples:
        >>> run = vaelab.train("conv", "mnist-sample", epochs=5, latent_dim=2)
        >>> run.history["test_elbo"]

    The settings (each as `vaelab train`'s flag of the same name):
    """
    args = dict(locals())
    from vaelab.data import memory, memory_dataset
    from vaelab.training import train as train_run

    if unknown:
        raise VaelabError(unknown_setting(next(iter(unknown)), "vaelab.train"))
    own = not isinstance(model, str)
    given = {k: v for k, v in args.items() if k in SETTINGS}
    options = {k: v for k, v in args.items() if k in OPTIONS and v is not None}
    data = memory_dataset(dataset) if memory.is_memory(dataset) else None
    name = memory.NAME if data is not None else dataset
    cfg = TrainConfig(model=custom.NAME if own else model, dataset=name, **given)
    if own and options:
        raise VaelabError(f"{', '.join(options)} are options of vaelab's own models; your model sets its own")
    changed = {k: v for k, v in {**given, **options}.items() if v != getattr(_T, k, None)}
    shown = "<data in memory>" if data is not None else repr(dataset)
    call = ", ".join(
        [f"model={model!r}" if not own else f"model={type(model).__name__}(...)", f"dataset={shown}"]
        + [f"{k}={v!r}" for k, v in changed.items()]
    )
    with verbosity(verbose):
        folder = train_run(
            cfg,
            options,
            out=out,
            overwrite=overwrite,
            progress=progress,
            model=model if own else None,
            command=f"vaelab.train({call})",
            callbacks=callbacks,
            data=data,
        )
    return Run.open(folder, model=model if own else None, data=data)


SETTINGS = [f.name for f in fields(TrainConfig) if f.name not in ("model", "dataset")]
OPTIONS = [
    "latent_dim",
    "hidden_dim",
    "hidden_layers",
    "activation",
    "dense_dim",
    "channels",
    "last_stride",
    "label_merge",
]


def unknown_setting(key: str, call: str) -> str:
    """The message for a keyword `call` does not take, with the nearest names it may have meant."""
    import difflib

    near = difflib.get_close_matches(key, SETTINGS + OPTIONS, n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"{call} has no setting {key!r}{hint} (help({call}) lists them all)"


def settings_help() -> str:
    """One line per setting, with its help and default, from the settings dataclasses (for train's docstring)."""
    from vaelab.models import FAMILIES

    lines = [
        f"        {f.name}: {f.metadata.get('help', '')} (default {f.default!r})"
        for f in fields(TrainConfig)
        if f.name in SETTINGS
    ]
    seen = {}
    for config_cls, *_ in FAMILIES.values():
        for f in fields(config_cls):
            if f.name in OPTIONS and f.name not in seen:
                seen[f.name] = (
                    f"        {f.name}: {f.metadata.get('help', '')} (a model option; default: the model's own)"
                )
    return "\n".join(lines + list(seen.values()))


train.__doc__ += settings_help()


def resume(
    run,
    progress: bool = True,
    model=None,
    callbacks=(),
    trust_code: bool = False,
    data=None,
    verbose: int | bool | None = None,
    **overrides,
) -> "Run":
    """Continue a run (a Run or its folder) from its last checkpoint; `overrides` may set epochs,
    lr, clip_grad and speed (nothing else of a run changes when it continues); `trust_code` and `data`
    as for `load`.

    Examples:
        >>> run = vaelab.resume(run, epochs=20)
    """
    from vaelab.training import resume as resume_run

    if isinstance(run, Run):
        model = model or (run.model if run.config["model"] == custom.NAME else None)
        data = data if data is not None else run.given_data
        run = run.dir
    data = as_data(data)
    with verbosity(verbose):
        folder = resume_run(
            run, progress=progress, model=model, callbacks=callbacks, trust_code=trust_code, data=data, **overrides
        )
    return Run.open(folder, model=model, data=data)


def load(folder, model=None, device: str = "cpu", trust_code: bool = False, data=None) -> "Run":
    """The run in `folder`. `model`: a model of your own to fill with the run's weights, when its
    classes cannot be imported here. A run of your own model records the import paths of its
    classes; a module this process has not imported yet is imported (its code runs) only with
    `trust_code=True`, for run folders you trust (see vaelab/models/custom.py). `data`: the data a
    run was trained on when no file holds them (data given in memory), in any form `train` takes.

    Examples:
        >>> run = vaelab.load("runs/conv-mnist-sample-20260101-120000")
        >>> run.scatter()
    """
    run = Run.open(folder, device, model=model, trust_code=trust_code, data=as_data(data))
    if data is not None and run.data.source != run.config["data"]["source"]:
        import logging

        logging.getLogger("vaelab").warning(
            f"warning: the data given are not those {run.dir} was trained on: {run.data.source}, "
            f"but the run says {run.config['data']['source']}"
        )
    return run


def as_data(data):
    """Data given in memory as a data set (vaelab.data.ImageData passes as it is)."""
    from vaelab.data import ImageData, memory_dataset

    return data if data is None or isinstance(data, ImageData) else memory_dataset(data)


def evaluate(run, iw_samples: int = 1000, trust_code: bool = False, data=None, **settings) -> dict:
    """Evaluate a run (a Run or its folder): the numbers of RUN/eval.json (EvalConfig fields as keywords);
    `trust_code` and `data` as for `load`.

    Examples:
        >>> scores = vaelab.evaluate(run, iw_samples=100)
        >>> scores["iw"]["bound"]
    """
    from vaelab.evaluation import evaluate_run

    if isinstance(run, Run):
        data = data if data is not None else run.given_data
        run = run.dir
    return evaluate_run(run, iw_samples, trust_code=trust_code, data=as_data(data), **settings)


def compare(runs, out, trust_code: bool = False, **settings) -> Path:
    """compare.html and its figures for several runs (Runs or folders) in `out` (CompareSettings
    fields as keywords, e.g. quality_samples=0); `trust_code` as for `load`.

    Examples:
        >>> vaelab.compare([run_a, run_b], "runs/compare")  # compare.html, compare.md and figures
    """
    from vaelab.comparison import compare_runs

    return compare_runs(list(runs), out, trust_code=trust_code, **settings)


def export(run, format: str = "onnx", part: str = "both", trust_code: bool = False) -> list:
    """A run's (a Run or its folder) decoder and/or encoder as ONNX or TorchScript files in RUN/export/;
    `trust_code` as for `load`.

    Examples:
        >>> paths = vaelab.export(run, "onnx")  # RUN/export/decoder.onnx, encoder.onnx
    """
    from vaelab.exports import export_run

    return export_run(run.dir if isinstance(run, Run) else run, format, part, trust_code=trust_code)


def sweep(
    name: str, values, out, *, model: str = "mlp", dataset: str = "mnist-sample", batched: str = "auto", **settings
) -> Path:
    """One run per value of setting `name` (e.g. "latent_dim", (2, 8, 32)) under `out`, with its table
    and figure; `settings` as for `train`. Runs of one model shape (seeds, beta, lr, ...) train as one
    batched model, each with its own run folder; `batched`: auto, on or off.

    Examples:
        >>> vaelab.sweep("latent_dim", (2, 8, 32), "runs/latent", model="mlp", epochs=5)
        >>> vaelab.sweep("seed", range(5), "runs/seeds", model="conv", epochs=5)  # one batched model
    """
    import itertools

    from vaelab.sweeps import MAX_RUNS
    from vaelab.sweeps import sweep as sweep_runs

    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise VaelabError(f"vaelab.sweep takes the values as a list, such as (2, 8, 32), got {values!r}")
    values = tuple(itertools.islice(values, MAX_RUNS + 1))  # a generator without end is not read to its end
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(model=model, dataset=dataset, **{k: v for k, v in settings.items() if k in names})
    options = {k: v for k, v in settings.items() if k not in names}
    return sweep_runs(cfg, options, name, values, out, batched=batched)
