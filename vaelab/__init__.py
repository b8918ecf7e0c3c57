"""vaelab: train, evaluate and explore variational autoencoders on small image data sets.

    import vaelab
    run = vaelab.train(model="mlp", dataset="mnist-sample", epochs=5)   # a Run
    run.history["test_elbo"]; run.scatter(); run.manifold(grid=15); run.class_grid()
    run = vaelab.load("runs/mlp-mnist-sample-...")                         # the same Run again

The names below are loaded when first used, so `import vaelab` (and the `vaelab` command) starts
without importing PyTorch.
"""

import importlib

from vaelab import log

__version__ = "0.2.0"

_EXPORTS = {  # public name -> the module that defines it
    "train": "vaelab.api",
    "resume": "vaelab.api",
    "load": "vaelab.api",
    "evaluate": "vaelab.api",
    "compare": "vaelab.api",
    "sweep": "vaelab.api",
    "Run": "vaelab.notebook",
    "History": "vaelab.history",
    "load_dataset": "vaelab.data",
    "build_model": "vaelab.models",
    "make_config": "vaelab.models",
    "MODELS": "vaelab.models",
    "VAE": "vaelab.models.common",
    "ModelConfig": "vaelab.models.common",
    "TrainConfig": "vaelab.config",
    "VaelabError": "vaelab.errors",
    "Callback": "vaelab.training",
    "TensorBoard": "vaelab.training",
    "WandbCallback": "vaelab.training",
    "MLflowCallback": "vaelab.training",
    "export": "vaelab.api",
    "check": "vaelab.checking",
}
__all__ = [*_EXPORTS, "__version__"]
log.setup()  # vaelab's lines go through logging: vaelab/log.py


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
