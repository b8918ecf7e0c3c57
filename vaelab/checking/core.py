"""One submission against one exercise: find its pieces, check each, then train it briefly and see
whether it lands in the reference band. Everything the student's code does wrong becomes a Check;
only a bad call of vaelab itself (an unknown exercise, a missing file) raises."""

import copy
import time

from vaelab import bands
from vaelab.checking import pieces as piece_checks
from vaelab.checking import reference
from vaelab.checking.exercises import FUNCTIONS, get_exercise
from vaelab.checking.models import Student, build, check_architecture, check_decoder, check_encoder
from vaelab.checking.results import Check, Report
from vaelab.checking.training import ShortTraining, train_and_score

SIGNATURES = {
    "Encoder": "class Encoder(nn.Module) with forward(x) -> (mu, logvar)",
    "Decoder": "class Decoder(nn.Module) with forward(z) -> logits (or probabilities)",
    "reparameterize": "def reparameterize(mu, logvar)",
    "kl_divergence": "def kl_divergence(mu, logvar)",
    "log_normal_pdf": "def log_normal_pdf(sample, mean, logvar)",
    "reconstruction_loss": "def reconstruction_loss(x, x_hat)",
    "mmd": "def mmd(a, b)",
}


def run_checks(
    found: dict, exercise: str, submission: str = "submission", train: bool = True, time_limit=100.0, figures=False
):
    """The Report of the pieces `found` ({piece: object}) against `exercise`; `figures`: after the
    training, the student's latent scatter and manifold beside those of vaelab's model trained alike."""
    ex = get_exercise(exercise)
    start, checks = time.perf_counter(), []
    for piece in ex.required:
        if piece in found:
            checks.append(Check(f"{piece.lower()}.found", "pass", f"{piece} found"))
        else:
            checks.append(
                Check(
                    f"{piece.lower()}.found",
                    "fail",
                    f"no {piece} found: the exercise asks for {SIGNATURES[piece]} (another name: names={{'{piece}': "
                    f"'YourName'}}, --names {piece}=YourName)",
                )
            )
    student = _student_checks(found, ex, checks)
    for piece in FUNCTIONS:
        if piece in found and piece != "reconstruction_loss":
            checks += piece_checks.FUNCTION_CHECKS[piece](found[piece])
    if "reconstruction_loss" in found:
        checks += _recon_checks(found["reconstruction_loss"], student)
    report = Report(submission, exercise, checks)
    if ex.model:
        report.checks.append(_training_check(found, ex, student, report, train, time_limit, figures))
    report.seconds = time.perf_counter() - start
    return report


def _student_checks(found, ex, checks) -> Student | None:
    if "Encoder" not in found or "Decoder" not in found:
        return None
    parts = {}
    for piece in ("Encoder", "Decoder"):
        module, how = build(piece, found[piece], ex.latent_dim, ex.conditional, ex.hidden)
        if module is None:
            checks.append(Check(f"{piece.lower()}.interface", "error", how))
            return None
        parts[piece] = module
    student = Student(parts["Encoder"], parts["Decoder"], ex.latent_dim, ex.conditional)
    checks += check_encoder(student)
    checks += check_decoder(student)
    if any(c.status != "pass" for c in checks if c.id.endswith(".interface")):
        return None
    if ex.model:
        checks += [check_architecture(part, student, ex.model) for part in ("encoder", "decoder")]
    return student


def _recon_checks(fn, student: Student | None) -> list[Check]:
    flat = False
    if student is not None:
        flat = student.decode(*_one_code(student)).dim() == 2
    convention, value = piece_checks.recon_convention(fn, flat)
    if student is None:
        return [value]
    if convention is None:
        return [value, Check("reconstruction_loss.decoder", "skip", "its value is wrong, so its input is unknown")]
    if student.output == "probabilities" and convention == "logits":
        return [
            value,
            Check(
                "reconstruction_loss.decoder",
                "fail",
                "the decoder applies a sigmoid and the loss applies another (binary cross-entropy with logits): "
                "drop the decoder's sigmoid, or use binary cross-entropy on probabilities",
            ),
        ]
    if student.output == "logits" and convention == "probabilities":
        return [
            value,
            Check(
                "reconstruction_loss.decoder",
                "fail",
                "the decoder returns logits but the loss expects probabilities: use binary cross-entropy with "
                "logits, or end the decoder in a sigmoid",
            ),
        ]
    return [value, Check("reconstruction_loss.decoder", "pass", f"the loss takes the decoder's {student.output}")]


def _one_code(student: Student):
    import torch

    return torch.zeros(2, student.latent_dim), torch.zeros(2, dtype=torch.long)


def _training_check(found, ex, student, report: Report, train: bool, time_limit: float, figures: bool) -> Check:
    settings = ShortTraining()
    if not train:
        return Check("training.band", "skip", "not trained (--no-train)")
    if student is None:
        return Check("training.band", "skip", "not trained: the Encoder and Decoder must work first")
    band = bands.get_band("check", ex.model, settings.dataset, settings.epochs, settings.batch_size)
    if band is None:
        return Check("training.band", "skip", f"no reference band for {ex.model} at {settings.key}")
    loss = {p: found.get(p, reference.PIECES[p]) for p in ("reparameterize", "kl_divergence", "reconstruction_loss")}
    if "reconstruction_loss" not in found and student.output == "probabilities":
        loss["reconstruction_loss"] = reference.reconstruction_loss_probabilities
    from vaelab.data import load_dataset

    data = load_dataset(settings.dataset)
    try:
        result = train_and_score(lambda: _fresh(found, ex, student), loss, settings, data, time_limit, figures)
    except Exception as e:  # the student's code, while training
        return Check("training.band", "error", f"training raised {type(e).__name__}: {e}")
    if "pictures" in result:
        report.figures = side_by_side(result.pop("pictures"), ex, settings, data)
    report.training = result
    if result.get("diverged"):
        return Check("training.band", "fail", f"the loss became {result['loss']} after {result['steps']} steps")
    if result.get("timed_out"):
        return Check("training.band", "fail", f"{settings.epochs} epochs took over {time_limit:g} s: a slow model")
    ok, text = bands.where(result["neg_elbo"], band)
    text = f"after {settings.epochs} epochs on {settings.dataset} (batch {settings.batch_size}), {text}"
    if ok:
        return Check("training.band", "pass", text)
    failed = [c.id for c in report.checks if c.status in ("fail", "error")]
    hint = f"fix {', '.join(failed)} first" if failed else "compare your layers and loss with the exercise's"
    return Check("training.band", "fail", f"{text}: {hint}")


def _fresh(found, ex, student: Student) -> Student:
    """New halves under the training's seed: built again from the classes, or copies of given modules."""
    parts = []
    for piece, old in (("Encoder", student.encoder), ("Decoder", student.decoder)):
        given = found[piece]
        module = build(piece, given, ex.latent_dim, ex.conditional, ex.hidden)[0] if isinstance(given, type) else None
        parts.append(module if module is not None else copy.deepcopy(old))
    fresh = Student(*parts, ex.latent_dim, ex.conditional)
    fresh.flat_input, fresh.label_form, fresh.output = student.flat_input, student.label_form, student.output
    return fresh


def side_by_side(yours: dict, ex, settings: ShortTraining, data) -> dict[str, str]:
    """{name: PNG as base64} of the student's latent scatter and manifold beside those of vaelab's
    model (PyTorch's default initialisation, the reference loss) trained by the same loop and seed."""
    import base64
    import io

    from vaelab.checking.training import ReferenceModel
    from vaelab.report.charts import manifold_panels, scatter_panels

    pieces = {p: reference.PIECES[p] for p in ("reparameterize", "kl_divergence", "reconstruction_loss")}
    theirs = train_and_score(lambda: ReferenceModel(ex.model), pieces, settings, data, pictures=True)["pictures"]
    both = {"yours": yours, f"vaelab's {ex.model}": theirs}
    names = ("z1", "z2")
    drawn = {
        "scatter": scatter_panels({k: (p["mu"], p["labels"], names) for k, p in both.items()}, data.classes),
        "manifold": manifold_panels({k: (p["tiles"], p["values"], p["values"], names) for k, p in both.items()}),
    }
    out = {}
    for name, figure in drawn.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        out[name] = base64.b64encode(buffer.getvalue()).decode()
    return out
