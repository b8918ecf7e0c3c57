"""The experiment trackers people already use, as callbacks: TensorBoard, Weights & Biases, MLflow.

Each logs the run's settings as hyper-parameters, the step scalars (loss terms, learning rate, KL
weight) every `step_every` steps, every epoch's train and test terms with the test ELBO and the
seconds, and the epoch's reconstructions; a resumed run goes on in the same record. The libraries
are optional extras (`pip install 'vaelab[tensorboard]'`, `'vaelab[wandb]'`, `'vaelab[mlflow]'`),
imported when training starts, so a missing one is named before the first step.
"""

import hashlib
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.training.callbacks import Callback


def hyperparameters(run_dir: Path) -> dict:
    """The run's model and every training setting, flat ({"train/lr": 0.001, "model/latent_dim": 2}),
    no key a folder of another (MLflow's file store keeps params as files),
    numbers, text and booleans only (lists as text), as every tracker takes them."""
    from vaelab import runs

    config = runs.read_config(run_dir)
    flat = {"model/name": config["model"], "data/name": config["data"]["name"]}
    for part, values in (("train", config["train"]), ("model", config["model_config"])):
        for key, value in values.items():
            flat[f"{part}/{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def steps_done(run_dir: Path) -> int:
    """Optimisation steps of the epochs the run has finished (a resumed run's tracker starts after them)."""
    from vaelab import runs

    config, rows = runs.read_config(run_dir), runs.read_metrics(run_dir)
    batch = config["train"]["batch_size"]
    return len(rows) * -(-config["data"]["train_size"] // batch)


def epoch_terms(row: dict) -> dict:
    """{split: {term: value}} of an epoch's metrics row: train and test terms side by side."""
    terms: dict = {"train": {}, "test": {}}
    for key, value in row.items():
        split, _, term = key.partition("_")
        if split in terms and term:
            terms[split][term] = value
    return terms


def need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise VaelabError(
            f"this callback needs the {module.split('.')[0]} package: pip install 'vaelab[{extra}]'"
        ) from None


class TensorBoard(Callback):
    """RUN/tensorboard/: the step scalars, each epoch's terms with train and test on one chart (two
    runs, train/ and test/, under the same tags, as Keras writes them), the reconstructions, the
    hyper-parameters in the HPARAMS tab, and at the end the test codes in the embedding projector.

        tensorboard --logdir RUN/tensorboard        (pip install 'vaelab[tensorboard]')
        tensorboard --logdir runs/                  (every run: their hyper-parameters side by side)

    Examples:
        >>> vaelab.train("conv", "mnist-sample", callbacks=[vaelab.TensorBoard(step_every=20)])
    """

    def __init__(self, log_dir=None, step_every: int = 50, projector_points: int = 5000):
        self.log_dir, self.step_every, self.projector_points = log_dir, step_every, projector_points
        self.writers = None

    def open(self, run_dir: Path) -> dict:
        if self.writers is None:
            SummaryWriter = need("torch.utils.tensorboard", "tensorboard").SummaryWriter
            from vaelab import runs

            # in the run folder, never through a link planted there (its event files are written by TensorBoard)
            folder = Path(self.log_dir or runs.inside(run_dir, runs.TENSORBOARD, "events").parent)
            purge = steps_done(run_dir) + 1  # what a stopped run logged past its checkpoint is dropped
            self.writers = {
                name: SummaryWriter(str(folder / name if name else folder), purge_step=purge)
                for name in ("", "train", "test")
            }
        return self.writers

    def on_train_begin(self, run_dir: Path) -> None:
        self.open(run_dir)  # a missing package is found before the first step
        self.hparams = hyperparameters(run_dir)

    def on_step(self, step: int, values: dict) -> None:
        self.step = step
        for key in ("loss", "recon", "kl", "lr", "beta"):
            self.writers[""].add_scalar(f"step/{key}", values[key], step)

    def on_epoch_end(self, row: dict, run_dir: Path) -> None:
        from vaelab import runs
        from vaelab.images import read_png

        writers, epoch = self.open(run_dir), row["epoch"]
        for split, terms in epoch_terms(row).items():
            for term, value in terms.items():
                writers[split].add_scalar(f"epoch/{term}", value, epoch)
        writers[""].add_scalar("epoch/seconds", row["seconds"], epoch)
        path = runs.recon_path(run_dir, epoch)
        if path.is_file():
            image = read_png(path)
            writers[""].add_image(
                "reconstructions (test images above)", image, epoch, dataformats="HW" if image.ndim == 2 else "HWC"
            )
        self.last = row
        for writer in writers.values():
            writer.flush()

    def on_train_end(self, run_dir: Path) -> None:
        """The hyper-parameters with the final scores, and the test encoder means of the report's
        scatter subset in the embedding projector."""
        import torch

        from vaelab import latent, runs
        from vaelab.data.pixels import to_float

        run, writers = runs.open_run(run_dir), self.open(run_dir)
        final = {f"final/{k}": run.rows[-1][k] for k in ("test_elbo", "test_recon", "test_kl")} if run.rows else {}
        writers[""].add_hparams(self.hparams, final, run_name="hparams")
        keep = latent.scatter_subset(len(run.mu), self.projector_points)
        labels = run.data.test_y.numpy()[keep]
        writers[""].add_embedding(
            torch.from_numpy(run.mu[keep]),
            metadata=[run.classes[k] for k in labels],
            label_img=to_float(run.data.test_x[keep]),
            global_step=len(run.rows),
            tag="test encoder means",
        )
        for writer in writers.values():
            writer.close()
        self.writers = None


class WandbCallback(Callback):
    """A Weights & Biases run per vaelab run (its files in RUN/wandb/): the hyper-parameters as its
    config, the step scalars, each epoch's train/ and test/ terms and its reconstructions. A resumed
    vaelab run goes on in the same W&B run. Offline: WANDB_MODE=offline, then `wandb sync RUN/wandb`.

        vaelab.train(..., callbacks=[vaelab.WandbCallback(project="vae")])   (pip install 'vaelab[wandb]')

    Examples:
        >>> vaelab.train("conv", "mnist-sample", callbacks=[vaelab.WandbCallback(project="vae")])
    """

    def __init__(self, project: str = "vaelab", step_every: int = 50, **init):
        self.project, self.step_every, self.init, self.run = project, step_every, init, None

    def on_train_begin(self, run_dir: Path) -> None:
        from vaelab import runs

        wandb = need("wandb", "wandb")
        folder = runs.inside(run_dir, runs.WANDB, "x").parent
        config = runs.read_config(run_dir)
        run_id = hashlib.sha256(f"{Path(run_dir).resolve()} {config.get('created')}".encode()).hexdigest()[:16]
        self.step = steps_done(run_dir)
        self.run = wandb.init(
            project=self.project,
            name=Path(run_dir).name,
            id=run_id,
            resume="allow",
            dir=str(folder.parent),
            config=hyperparameters(run_dir),
            **self.init,
        )

    def on_step(self, step: int, values: dict) -> None:
        self.step = step
        self.run.log({f"step/{k}": values[k] for k in ("loss", "recon", "kl", "lr", "beta")}, step=step)

    def on_epoch_end(self, row: dict, run_dir: Path) -> None:
        import wandb

        from vaelab import runs

        logged = {f"{split}/{term}": v for split, terms in epoch_terms(row).items() for term, v in terms.items()}
        logged |= {"epoch": row["epoch"], "seconds": row["seconds"]}
        path = runs.recon_path(run_dir, row["epoch"])
        if path.is_file():
            logged["reconstructions"] = wandb.Image(str(path), caption="test images above, reconstructions below")
        self.run.log(logged, step=max(self.step, 1))

    def on_train_end(self, run_dir: Path) -> None:
        self.run.finish()
        self.run = None


class MLflowCallback(Callback):
    """An MLflow run per vaelab run, in the tracking store MLflow is set to (`tracking_uri`, or
    MLFLOW_TRACKING_URI, or ./mlruns): the hyper-parameters as params, the step scalars, each epoch's
    train/ and test/ terms and its reconstructions as an artifact. A resumed vaelab run goes on in
    the same MLflow run (found by its tag vaelab.run).

        vaelab.train(..., callbacks=[vaelab.MLflowCallback(experiment="vae")])   (pip install 'vaelab[mlflow]')

    Examples:
        >>> vaelab.train("conv", "mnist-sample", callbacks=[vaelab.MLflowCallback(experiment="vae")])
    """

    def __init__(self, experiment: str = "vaelab", tracking_uri: str | None = None, step_every: int = 50):
        self.experiment, self.tracking_uri, self.step_every = experiment, tracking_uri, step_every
        self.client = self.run_id = None

    def on_train_begin(self, run_dir: Path) -> None:
        mlflow = need("mlflow", "mlflow")
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        self.client = mlflow.tracking.MlflowClient()
        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.experiment)
        tag = str(Path(run_dir).resolve())
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`vaelab.run` = '{tag}'", max_results=1)
        if found:
            self.run_id = found[0].info.run_id
        else:
            run = self.client.create_run(experiment_id, run_name=Path(run_dir).name, tags={"vaelab.run": tag})
            self.run_id = run.info.run_id
            for key, value in hyperparameters(run_dir).items():
                self.client.log_param(self.run_id, key, value)
        self.client.update_run(self.run_id, status="RUNNING")
        self.step = steps_done(run_dir)

    def on_step(self, step: int, values: dict) -> None:
        self.step = step
        for key in ("loss", "recon", "kl", "lr", "beta"):
            self.client.log_metric(self.run_id, f"step/{key}", values[key], step=step)

    def on_epoch_end(self, row: dict, run_dir: Path) -> None:
        from vaelab import runs

        for split, terms in epoch_terms(row).items():
            for term, value in terms.items():
                self.client.log_metric(self.run_id, f"{split}/{term}", value, step=row["epoch"])
        self.client.log_metric(self.run_id, "seconds", row["seconds"], step=row["epoch"])
        path = runs.recon_path(run_dir, row["epoch"])
        if path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path="reconstructions")

    def on_train_end(self, run_dir: Path) -> None:
        self.client.set_terminated(self.run_id)
