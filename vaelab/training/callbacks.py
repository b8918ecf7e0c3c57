"""What training tells the world as it goes: a small callback interface, and TensorBoard on it.

A callback is called by the training loop (vaelab/training/loop.py), in the process that writes the run
folder, with what the loop already knows; it changes nothing in training. Subclass `Callback` and
override what you need:

    class Print(vaelab.Callback):
        step_every = 100                          # on_step every 100 optimisation steps
        def on_step(self, step, values):          # values: loss, recon, kl (the step's batch), lr, beta, epoch
            print(step, values["loss"])
        def on_epoch_end(self, row, run_dir):     # row: the epoch's metrics.jsonl row
            print(row["test_elbo"])

    vaelab.train(model="mlp", dataset="mnist-sample", callbacks=[Print()])

docs/callbacks.md shows the same for Weights & Biases and MLflow. vaelab's own files (metrics,
reconstructions, checkpoints) do not go through callbacks.
"""

from pathlib import Path

from vaelab.errors import VaelabError


class Callback:
    """Hooks of the training loop; each does nothing until overridden."""

    step_every: int = 50  # steps between on_step calls (each costs one wait for the device)

    def on_train_begin(self, run_dir: Path) -> None:
        """Before the first step (of this process: a resumed run calls it again)."""

    def on_step(self, step: int, values: dict) -> None:
        """After optimisation step `step` (counted from 1 over the whole run) when it divides by step_every."""

    def on_epoch_end(self, row: dict, run_dir: Path) -> None:
        """After an epoch's files are written; `row` is its row of metrics.jsonl."""

    def on_train_end(self, run_dir: Path) -> None:
        """After the last epoch."""


HOOKS = ("on_train_begin", "on_step", "on_epoch_end", "on_train_end")


def check_callbacks(callbacks) -> list:
    """The callbacks as a list, each checked before anything is trained or written: an object with the
    four hooks (a vaelab.Callback) and a step_every that is a whole number of at least 1."""
    if isinstance(callbacks, Callback) or not isinstance(callbacks, list | tuple):
        raise VaelabError(f"callbacks must be a list of vaelab.Callback objects, got {callbacks!r}")
    for c in callbacks:
        missing = [h for h in HOOKS if not callable(getattr(c, h, None))]
        if missing:
            raise VaelabError(
                f"callback {c!r} has no {missing[0]}(): a callback is a subclass of vaelab.Callback "
                f"(class Mine(vaelab.Callback): ...), which has every hook"
            )
        every = getattr(c, "step_every", None)
        if type(every) is not int or every < 1:
            raise VaelabError(f"callback {c!r}: step_every must be a whole number of at least 1, got {every!r}")
    return list(callbacks)


class TensorBoard(Callback):
    """RUN/tensorboard/: scalars per step (loss terms, learning rate, KL weight) and per epoch (train
    and test terms, test ELBO, seconds), the reconstructions of each epoch, and at the end the test
    codes in TensorBoard's embedding projector, with their labels and images.

        tensorboard --logdir RUN/tensorboard        (pip install tensorboard)
    """

    def __init__(self, log_dir=None, step_every: int = 50, projector_points: int = 5000):
        self.log_dir, self.step_every, self.projector_points = log_dir, step_every, projector_points
        self.writer = None

    def open(self, run_dir: Path):
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise VaelabError(
                    "--tensorboard needs the tensorboard package: pip install 'vaelab[tensorboard]'"
                ) from None
            from vaelab import runs

            # in the run folder, never through a link planted there (its event files are written by TensorBoard)
            folder = self.log_dir or runs.inside(run_dir, runs.TENSORBOARD, "events").parent
            self.writer = SummaryWriter(str(folder))
        return self.writer

    def on_train_begin(self, run_dir: Path) -> None:
        self.open(run_dir)  # a missing package is found before the first step

    def on_step(self, step: int, values: dict) -> None:
        for key in ("loss", "recon", "kl", "lr", "beta"):
            self.writer.add_scalar(f"step/{key}", values[key], step)

    def on_epoch_end(self, row: dict, run_dir: Path) -> None:
        from vaelab import runs
        from vaelab.images import read_png

        writer, epoch = self.open(run_dir), row["epoch"]
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(f"epoch/{key}", value, epoch)
        path = runs.recon_path(run_dir, epoch)
        if path.is_file():
            image = read_png(path)
            writer.add_image(
                "reconstructions (test images above)", image, epoch, dataformats="HW" if image.ndim == 2 else "HWC"
            )
        writer.flush()

    def on_train_end(self, run_dir: Path) -> None:
        """The test encoder means of the report's scatter subset in the embedding projector."""
        import torch

        from vaelab import latent, runs
        from vaelab.data.pixels import to_float

        run, writer = runs.open_run(run_dir), self.open(run_dir)
        keep = latent.scatter_subset(len(run.mu), self.projector_points)
        labels = run.data.test_y.numpy()[keep]
        writer.add_embedding(
            torch.from_numpy(run.mu[keep]),
            metadata=[run.classes[k] for k in labels],
            label_img=to_float(run.data.test_x[keep]),
            global_step=len(run.rows),
            tag="test encoder means",
        )
        writer.close()
        self.writer = None
