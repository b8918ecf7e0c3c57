"""`vaelab demo`: the first experience, one command, online or not."""

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.errors import VaelabError
from vaelab.training import Callback, train


class Estimate(Callback):
    """After the first epoch: how long all of them will take, from its measured time."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, row, run_dir):
        if row["epoch"] == 1 and self.epochs > 1:
            total = row["seconds"] * self.epochs
            print(f"  (the {self.epochs} epochs take about {_duration(total)} in all at this pace, then the report)")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} minutes"


def pick_dataset() -> str:
    """MNIST when its files are here or can be downloaded, else the bundled sample."""
    try:
        load_dataset("mnist")
        print("Training the conv VAE on MNIST (60,000 training images).")
        return "mnist"
    except VaelabError as e:
        reason = str(e).splitlines()[0]
        print(
            f"MNIST is not available here ({reason}).\n"
            "Training the conv VAE on the bundled mnist-sample instead: 5,000 real MNIST digits "
            "(4,000 train / 1,000 test) that ship with vaelab."
        )
        return "mnist-sample"


def demo(out: str | None = None, epochs: int | None = None) -> None:
    dataset = pick_dataset()
    # 4,000 images make only 31 steps of 128 an epoch, too few for the conv model's 2-D code
    # to form before the KL term flattens it; batches of 32 (as one course notebook uses) do.
    epochs, batch_size = (epochs or 3, 128) if dataset == "mnist" else (epochs or 10, 32)
    out = out or runs.default_folder("demo", dataset)
    print(f"{epochs} epochs of batches of {batch_size}; the first epoch's time gives an estimate of the rest.")
    cfg = TrainConfig(model="conv", dataset=dataset, epochs=epochs, batch_size=batch_size)
    run_dir = train(cfg, out=out, callbacks=[Estimate(epochs)])
    from vaelab.report import make_report  # matplotlib only after training

    report = make_report(run_dir)
    print(
        f"\nDone. Everything is in {run_dir}/:\n"
        f"  report.html          every figure (latent scatter, manifold grid, walks, ...) and the metrics\n"
        f"  metrics.csv          losses per epoch (train/test total, reconstruction, KL; test ELBO)\n"
        f"  recon/epoch_*.png    8 test digits (top) and their reconstructions (bottom), per epoch\n"
        f"  model.safetensors    the trained weights; config.json rebuilds the model\n"
        f"Open {report} in a browser. Next: vaelab sample {run_dir} -n 64"
    )
