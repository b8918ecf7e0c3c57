"""The run folder: everything vaelab writes about a run, and the one way each file is read back.

    folder.py    every file's name, its writer and its reader; an epoch's files committed together
    weights.py   weights and checkpoints as safetensors
    run.py       `Run`: a run loaded from its folder alone (config, model, metrics, data, codes)
    checks.py    what is read back, checked before use          (private to this folder)
    journal.py   several files of a folder replaced as one       (private)
    lock.py      one writer per run folder                       (private)

Modules outside this folder import from here only; the tests check it.
"""

from vaelab.runs.checks import check_position, resume_notes
from vaelab.runs.folder import (
    CHECKPOINT,
    CONFIG,
    EPOCH_FILES,
    EVAL,
    FIGURES,
    METRICS,
    METRICS_CSV,
    RECON,
    REPORT,
    RUN_FILES,
    SAMPLES,
    WEIGHTS,
    append_metrics,
    clear_run,
    commit_epoch,
    default_folder,
    describe,
    figure_path,
    new_run_dir,
    read_config,
    read_eval,
    read_metrics,
    recon_path,
    reconstruction_epochs,
    recover,
    remove_figures,
    samples_path,
    save_figure,
    save_reconstructions,
    write_config,
    write_eval,
    write_report,
)
from vaelab.runs.lock import RunInUse, RunLock
from vaelab.runs.run import Run, load_model, open_run, rebuild
from vaelab.runs.weights import (
    FORMAT,
    config_dict,
    load_checkpoint,
    load_weights,
    read_safetensors,
    save_checkpoint,
    save_weights,
)

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EPOCH_FILES",
    "EVAL",
    "FIGURES",
    "FORMAT",
    "METRICS",
    "METRICS_CSV",
    "RECON",
    "REPORT",
    "RUN_FILES",
    "SAMPLES",
    "WEIGHTS",
    "Run",
    "RunInUse",
    "RunLock",
    "append_metrics",
    "check_position",
    "clear_run",
    "commit_epoch",
    "config_dict",
    "default_folder",
    "describe",
    "figure_path",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "new_run_dir",
    "open_run",
    "read_config",
    "read_eval",
    "read_metrics",
    "read_safetensors",
    "rebuild",
    "recon_path",
    "reconstruction_epochs",
    "recover",
    "remove_figures",
    "resume_notes",
    "samples_path",
    "save_checkpoint",
    "save_figure",
    "save_reconstructions",
    "save_weights",
    "write_config",
    "write_eval",
    "write_report",
]
