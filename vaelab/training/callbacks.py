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

trackers.py builds TensorBoard, Weights & Biases and MLflow on it. vaelab's own files (metrics,
reconstructions, checkpoints) do not go through callbacks.
"""

from pathlib import Path

from vaelab.errors import VaelabError


class Callback:
    """Hooks of the training loop; each does nothing until overridden.

    Examples:
        >>> class Print(vaelab.Callback):
        >>>     def on_epoch_end(self, row, run_dir):
        >>>         print(row["epoch"], row["test_elbo"])
        >>> vaelab.train("mlp", "mnist-sample", callbacks=[Print()])
    """

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
