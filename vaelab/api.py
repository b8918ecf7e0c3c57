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

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.models import custom
from vaelab.report import figures


class History:
    """Per-epoch metrics: `history[3]` is the row of epoch 4, `history["test_elbo"]` a column."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r}; the columns are {', '.join(self.columns)}")
            return [r[key] for r in self.rows]
        return self.rows[key]

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs: {', '.join(self.columns)})"

    def _repr_html_(self) -> str:
        from vaelab.report.pages import table

        return table(self.columns, [list(r.values()) for r in self.rows])

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas is not a dependency of vaelab)."""
        import pandas

        return pandas.DataFrame(self.rows).set_index("epoch")


class Run(runs.Run):
    """A run folder with its model, data and history, and one method per figure of the exercises.
    Figure methods return a matplotlib Figure: Jupyter shows it, `fig.savefig(path)` saves it.
    It is the run folder's own `vaelab.runs.Run` (dir, config, model, rows, data, codes) with the
    notebook's methods added."""

    @property
    def history(self) -> History:
        return History(self.rows)

    def __repr__(self) -> str:
        rows, c = self.rows, self.config
        last = f", test ELBO {rows[-1]['test_elbo']:.2f}" if rows else ""
        return f"Run('{self.dir}': {c['model']} on {c['data']['name']}, {len(rows)} epochs{last})"

    # ---- figures (their settings checked as `vaelab report` checks its flags)
    def curves(self):
        """Total, reconstruction and KL per epoch, train and test."""
        return figures.curves(self)[0]

    def seconds(self):
        """Seconds per epoch, each epoch a bar."""
        return figures.seconds(self)[0]

    def examples(self):
        """One training image of each class."""
        return figures.examples(self)[0]

    def scatter(self, z: str = "mean", split: str = "test", projection: str = "pca", seed: int = 0):
        """Codes of (at most) 5,000 images coloured by class: z="mean" or "sample", split="test"
        or "train"; a latent above 2-D in its principal plane, or projection="tsne"."""
        s = self._settings(z=z, split=split, projection=projection, seed=seed)
        return figures.scatter(self, s.z, s.split, s.projection, s.seed)[0]

    def manifold(
        self, grid: int = 15, label: int | None = None, range: str = "data", scale: float = 3.0, trim: float = 0.0
    ):
        """The decoder over a grid×grid grid of z: range="data" (the codes' min/max) or "scale" (±scale)."""
        s = self._settings(grid=grid, range_=range, scale=scale, trim=trim)
        return figures.manifold(self, s.grid, self._label(label), s.range_, s.scale, s.trim)[0]

    def origin(self, label: int | None = None):
        """The image decoded at z = 0 (a CVAE: under `label`, or every label when None)."""
        if self.conditional and label is None:
            return figures.origins(self)[0]
        return figures.origin(self, self._label(label))[0]

    def class_grid(self, per_class: int = 5, seed: int = 0):
        """A row of samples per class, checked by vaelab's classifier."""
        s = self._settings(per_class=per_class, seed=seed)
        return figures.class_grid(self, s.per_class, s.seed)[0]

    def walks(self, pairs=((1, 7), (4, 9), (3, 8)), steps: int = 10):
        """Decoded images on the line in z between a test image of class A and one of class B."""
        s = self._settings(walk=pairs, steps=steps)
        return figures.walks(self, s.walk, s.steps)[0]

    def samples(self, n: int = 64, label: int | None = None, seed: int = 0):
        """n images from z ~ N(0, I) (a CVAE: with `label`, or every label in turn)."""
        s = self._settings(samples=n, seed=seed)
        return figures.samples(self, s.samples, s.seed, None if label is None else self._label(label))[0]

    def reconstructions(self):
        """The same test images and their reconstructions after each epoch."""
        made = figures.reconstructions(self)
        if made is None:
            raise VaelabError(f"{self.dir} has no reconstructions yet: train at least one epoch")
        return made[0]

    def architecture(self):
        """Encoder and decoder layers with output shapes and parameter counts."""
        return figures.architecture(self)[0]

    def label_swap(self):
        """A CVAE's test images, each decoded under every label with its own z."""
        if not self.conditional:
            raise VaelabError("the label swap needs a conditional model (cvae, cvae-mlp)")
        return figures.label_swap(self)[0]

    def _settings(self, **given):
        """The report's settings with `given` changed, checked as the CLI checks them (ranges, and
        classes the run's data has)."""
        from vaelab.report import ReportSettings, fitted, settings_problem

        s = fitted(ReportSettings(**given), self.classes)
        problem = settings_problem(s, self.classes)
        if problem:
            raise VaelabError(problem)
        return s

    def _label(self, label):
        """A conditional model's label, checked; None for an unconditional model."""
        if not self.conditional:
            if label is not None:
                raise VaelabError(f"this run's model ({self.config['model']}) is not conditional; leave label out")
            return None
        k = self.model.config.num_classes
        if label is None:
            raise VaelabError("this model is conditional: give the label to decode with, e.g. label=4")
        if type(label) is not int or not 0 <= label < k:
            raise VaelabError(f"label must be a class index from 0 to {k - 1}, got {label!r}")
        return label

    # ---- jobs on the run
    def evaluate(self, **settings) -> dict:
        """Scores (vaelab.evaluation.EvalConfig fields as keywords, e.g. iw_samples=100); also RUN/eval.json."""
        return evaluate(self, **settings)

    def report(self, **settings) -> Path:
        """RUN/report.html and its figures (vaelab.report.ReportSettings fields as keywords)."""
        from vaelab.report import make_report

        return make_report(self, **settings)

    def resume(self, progress: bool = True, callbacks=(), **overrides) -> "Run":
        """Continue training (epochs=, lr=, clip_grad=, speed= may change); returns the run."""
        return resume(self, progress=progress, callbacks=callbacks, **overrides)

    def export(self, format: str = "onnx", part: str = "both") -> list:
        """The decoder and/or encoder as ONNX or TorchScript files in RUN/export/ (vaelab/export.py)."""
        from vaelab.export import export_run

        return export_run(self.dir, format, part)


# ---- functions -------------------------------------------------------------------------------------


def split_settings(settings: dict, call: str) -> tuple[dict, dict]:
    """(training settings, model options) of a call's keywords; an unknown keyword is refused with
    the nearest names it may have meant."""
    import difflib

    from vaelab.models import FAMILIES, option_fields

    train_names = {f.name for f in fields(TrainConfig)}
    option_names = {f.name for family in FAMILIES for f in option_fields(family)}
    for key in settings:
        if key not in train_names | option_names:
            near = difflib.get_close_matches(key, sorted(train_names | option_names), n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise VaelabError(
                f"{call} has no setting {key!r}{hint} (its settings are vaelab.TrainConfig's fields "
                f"and the model options {', '.join(sorted(option_names))})"
            )
    return {k: v for k, v in settings.items() if k in train_names}, {
        k: v for k, v in settings.items() if k not in train_names
    }


def train(
    model="conv",
    dataset: str = "mnist",
    *,
    out=None,
    overwrite: bool = False,
    progress: bool = True,
    callbacks=(),
    **settings,
) -> Run:
    """Train and return the run. `model`: a preset name (vaelab.MODELS) or a module of your own
    that follows the model interface; `settings`: TrainConfig fields (epochs=, batch_size=, lr=,
    beta=, seed=, ...) and model options (latent_dim=, hidden_dim=, ...); `callbacks`:
    vaelab.Callback objects (vaelab.TensorBoard(), your own)."""
    from vaelab.training import train as train_run

    own = not isinstance(model, str)
    given, options = split_settings(settings, "vaelab.train")
    cfg = TrainConfig(model=custom.NAME if own else model, dataset=dataset, **given)
    if own and options:
        raise VaelabError(f"{', '.join(options)} are options of vaelab's own models; your model sets its own")
    call = ", ".join(
        [
            f"model={model!r}" if not own else f"model={type(model).__name__}(...)",
            f"dataset={dataset!r}",
            *(f"{k}={v!r}" for k, v in settings.items()),
        ]
    )
    folder = train_run(
        cfg,
        options,
        out=out,
        overwrite=overwrite,
        progress=progress,
        model=model if own else None,
        command=f"vaelab.train({call})",
        callbacks=callbacks,
    )
    return load(folder, model=model if own else None)


def resume(run, progress: bool = True, model=None, callbacks=(), trust_code: bool = False, **overrides) -> Run:
    """Continue a run (a Run or its folder) from its last checkpoint; `overrides` may set epochs,
    lr, clip_grad and speed (nothing else of a run changes when it continues); `trust_code` as for `load`."""
    from vaelab.training import resume as resume_run

    if isinstance(run, Run):
        model = model or (run.model if run.config["model"] == custom.NAME else None)
        run = run.dir
    folder = resume_run(run, progress=progress, model=model, callbacks=callbacks, trust_code=trust_code, **overrides)
    return load(folder, model=model)


def load(folder, model=None, device: str = "cpu", trust_code: bool = False) -> Run:
    """The run in `folder`. `model`: a model of your own to fill with the run's weights, when its
    classes cannot be imported here. A run of your own model records the import paths of its
    classes; a module this process has not imported yet is imported (its code runs) only with
    `trust_code=True`, for run folders you trust (see vaelab/models/custom.py)."""
    return Run.open(folder, device, model=model, trust_code=trust_code)


def evaluate(run, iw_samples: int = 1000, trust_code: bool = False, **settings) -> dict:
    """Evaluate a run (a Run or its folder): the numbers of RUN/eval.json (EvalConfig fields as keywords);
    `trust_code` as for `load`."""
    from vaelab.evaluation import evaluate_run

    return evaluate_run(run.dir if isinstance(run, Run) else run, iw_samples, trust_code=trust_code, **settings)


def compare(runs, out, trust_code: bool = False, **settings) -> Path:
    """compare.html and its figures for several runs (Runs or folders) in `out` (CompareSettings
    fields as keywords, e.g. quality_samples=0); `trust_code` as for `load`."""
    from vaelab.comparison import compare_runs

    return compare_runs(list(runs), out, trust_code=trust_code, **settings)


def export(run, format: str = "onnx", part: str = "both", trust_code: bool = False) -> list:
    """A run's (a Run or its folder) decoder and/or encoder as ONNX or TorchScript files in RUN/export/;
    `trust_code` as for `load`."""
    from vaelab.export import export_run

    return export_run(run.dir if isinstance(run, Run) else run, format, part, trust_code=trust_code)


def sweep(name: str, values, out, *, model: str = "mlp", dataset: str = "mnist-sample", **settings) -> Path:
    """One run per value of setting `name` (e.g. "latent_dim", (2, 8, 32)) under `out`, with its table
    and figure; `settings` as for `train`."""
    from vaelab.sweeps import sweep as sweep_runs

    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(model=model, dataset=dataset, **{k: v for k, v in settings.items() if k in names})
    return sweep_runs(cfg, {k: v for k, v in settings.items() if k not in names}, name, tuple(values), out)
