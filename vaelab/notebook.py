"""The run a notebook holds: the run folder's `vaelab.runs.Run` (its config, model, metrics, data and
codes) with the history, one method per figure of the exercises, several figures at once, and the
jobs on the run. Figure methods return matplotlib Figures, which Jupyter shows without `%matplotlib`.
"""

import html
import os
from pathlib import Path

from vaelab import runs
from vaelab.errors import VaelabError
from vaelab.history import History
from vaelab.options import keywords
from vaelab.report import figures


class Run(runs.Run):
    """A run folder with its model, data and history, and one method per figure of the exercises.
    Figure methods return a matplotlib Figure: Jupyter shows it, `fig.savefig(path)` saves it.
    It is the run folder's own `vaelab.runs.Run` (dir, config, model, rows, data, codes) with the
    notebook's methods added.

    Examples:
        >>> run = vaelab.load("runs/conv-mnist-sample-20260101-120000")
        >>> run.scatter(); run.manifold(grid=15)
        >>> run.history["test_elbo"][-1]
    """

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
        with keywords(walk="pairs"):
            s = self._settings(walk=pairs, steps=steps)
        return figures.walks(self, s.walk, s.steps)[0]

    def samples(self, n: int = 64, label: int | None = None, seed: int = 0):
        """n images from z ~ N(0, I) (a CVAE: with `label`, or every label in turn)."""
        with keywords(samples="n"):
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

    def show(self, *names: str, **settings) -> "Figures":
        """Several figures at once, shown together as a cell's last line (a lone figure shows itself):
        the methods named (default curves, scatter, manifold and samples; a CVAE's origin instead of
        its manifold), each called with the `settings` it takes.

        Examples:
            >>> run.show("curves", "scatter", "manifold", "class_grid")
        """
        import inspect

        default = ("curves", "scatter", "origin" if self.conditional else "manifold", "samples")
        shown = []
        for name in names or default:
            method = getattr(type(self), name, None) if name in FIGURE_METHODS else None
            if method is None:
                raise VaelabError(f"run.show takes figure names: {', '.join(FIGURE_METHODS)}; not {name!r}")
            takes = inspect.signature(method).parameters
            shown.append((name, method(self, **{k: v for k, v in settings.items() if k in takes})))
        return Figures(shown)

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
        from vaelab.evaluation import evaluate_run

        return evaluate_run(self.dir, data=self.given_data, **settings)

    def report(self, **settings) -> "Page":
        """RUN/report.html and its figures (vaelab.report.ReportSettings fields as keywords); as a
        cell's last line, a link that opens it."""
        from vaelab.report import make_report

        return Page(make_report(self, **settings))

    def resume(self, progress: bool = True, callbacks=(), **overrides) -> "Run":
        """Continue training (epochs=, lr=, clip_grad=, speed= may change); returns the run."""
        from vaelab.models import custom
        from vaelab.training import resume

        model = self.model if self.config["model"] == custom.NAME else None
        folder = resume(
            self.dir, progress=progress, model=model, callbacks=callbacks, data=self.given_data, **overrides
        )
        return type(self).open(folder, model=model, data=self.given_data)

    def export(self, format: str = "onnx", part: str = "both") -> list:
        """The decoder and/or encoder as ONNX or TorchScript files in RUN/export/ (vaelab/exports.py)."""
        from vaelab.exports import export_run

        return export_run(self.dir, format, part)


class Page(type(Path())):
    """The path of a page vaelab wrote (a Path in every way), shown in Jupyter as a link to open it.

    Examples:
        >>> page = run.report()   # as a cell's last line: "report.html of RUN: open it"
        >>> page.read_text()[:15]
    """

    def _repr_html_(self) -> str:
        relative = os.path.relpath(self, Path.cwd())  # Jupyter serves the notebook's folder and below
        href = self.as_uri() if relative.startswith("..") else Path(relative).as_posix()
        return (
            f'<a href="{html.escape(href)}" target="_blank">{html.escape(self.name)} of '
            f"{html.escape(str(self.parent))}</a>: open it (in JupyterLab, or a browser from this machine)"
        )


FIGURE_METHODS = (
    "curves",
    "seconds",
    "examples",
    "scatter",
    "manifold",
    "origin",
    "class_grid",
    "walks",
    "samples",
    "reconstructions",
    "architecture",
    "label_swap",
)


class Figures:
    """Figures shown together: as a cell's last line Jupyter shows each of them (HTML of their PNGs)."""

    def __init__(self, named: list):
        self.named = named

    def __getitem__(self, name: str):
        return dict(self.named)[name]

    def __repr__(self) -> str:
        return f"Figures({', '.join(name for name, _ in self.named)})"

    def _repr_html_(self) -> str:
        import base64

        from vaelab.images import figure_bytes

        parts = [
            f'<figure style="display:inline-block;margin:4px"><img src="data:image/png;base64,'
            f'{base64.b64encode(figure_bytes(fig)).decode()}"><figcaption>{name}</figcaption></figure>'
            for name, fig in self.named
        ]
        return "<div>" + "".join(parts) + "</div>"
