"""One line per subcommand: all `vaelab --help` needs, so it imports nothing heavy."""

HELP = {
    "data": "list the data sets, where each was found or why not",
    "summary": "print a model's layers, output shapes and parameter counts",
    "train": "train a model and write a run folder",
    "sample": "write a PNG grid of images generated from z ~ N(0, I)",
    "demo": "train the conv VAE on MNIST (or the bundled sample offline) in one command",
    "report": "write RUN/figures/*.png and RUN/report.html",
    "compare": "compare runs: a table with sample quality, test curves, latent scatters, samples and manifolds",
    "evaluate": "score a run: ELBO, importance-weighted bound, latent classifiers, sample quality (RUN/eval.json)",
    "sweep": "train one run per value of one setting (e.g. --latent-dim 2,4,8,16,32); table and figure",
    "export": "write a run's decoder and encoder as ONNX or TorchScript files that run without vaelab",
    "serve": "open the latent-space explorer (a web page) for one or more runs",
    "check": "check a student's VAE pieces (file, notebook, folder) against an exercise; JSON, Gradescope, JUnit",
}
