"""A run's figures with their captions: what the report shows, and what the notebook's run object
(vaelab.Run) returns from its figure methods. The same function makes both, so they agree.

Each function takes an opened run (vaelab.runs.Run) and what it needs of the report's settings, and
returns (Figure, caption); the caption says how the figure was made. This module chooses what to
draw and runs the model (through vaelab/latent.py); drawing the arrays is plots.py's job.
"""

import numpy as np
import torch

from vaelab import latent, runs
from vaelab.images import read_png, tile
from vaelab.losses import NATS, TERM_TITLES
from vaelab.models.summary import layer_rows
from vaelab.report import plots

MAX_EPOCH_ROWS = 20  # the reconstructions figure shows at most this many epochs, evenly spaced
COLLAPSED = 0.05  # a data range narrower than this, in prior standard deviations, is collapsed
CANDIDATES = 100  # codes drawn per class for the per-class grid, of which it shows recognised ones


# ---- the data and training ---------------------------------------------------------------------


def examples(run):
    d = run.data
    return (
        plots.class_examples(d.train_x, d.train_y, d.classes),
        f"The first training image of each class of {d.name}, titled with its class name.",
    )


def curves(run):
    objective = run.objective
    panels = [(k, TERM_TITLES[k], "nats per image" if k in NATS else "") for k in objective.terms]
    return (
        plots.training_curves(run.rows, panels),
        f"Loss per epoch in nats per image: train is the mean over the epoch's batches, test is the whole "
        f"test split with z sampled as in training; {objective.caption}.",
    )


def seconds(run):
    t = run.config["train"]
    images = -(-run.config["data"]["train_size"] // t["batch_size"]) * t["batch_size"]  # whole batches (the loop's)
    times = [r["seconds"] for r in run.rows]
    return (
        plots.epoch_seconds(run.rows, images),
        f"Seconds per epoch on {run.config['device']}: training {images:,} images (the last batch made up "
        f"with the epoch's first images) and evaluating the test split; from {min(times):.1f} to "
        f"{max(times):.1f} s, mean {run.seconds_per_epoch:.1f} s.",
    )


def reconstructions(run):
    """None when the run has no recon/epoch_*.png yet."""
    found = runs.reconstruction_epochs(run.dir)
    if not found:
        return None
    keep = np.unique(np.linspace(0, len(found) - 1, min(len(found), MAX_EPOCH_ROWS)).round().astype(int))
    epochs = [found[i][0] for i in keep]
    which = "each epoch" if len(keep) == len(found) else f"{len(keep)} of the {len(found)} epochs, evenly spaced"
    return (
        plots.reconstruction_epochs([read_png(found[i][1]) for i in keep], epochs),
        f"The same test images (top row) and their reconstructions from the encoder mean after {which} "
        f"(one row each, epoch {epochs[0]} first), from recon/epoch_*.png.",
    )


def architecture(run):
    c = run.model.config
    return (
        plots.architecture_diagram(layer_rows(run.model), c.input_shape, c.latent_dim, c.num_classes),
        "Encoder and decoder layers in call order, each with its output shape and parameter count (from a "
        "forward pass of one zero input); layers side by side read the same input.",
    )


# ---- the latent space ------------------------------------------------------------------------------


def scatter(run, z: str = "mean", split: str = "test", projection: str = "pca", seed: int = 0):
    """The codes of (at most) 5,000 images of `split`: encoder means, or one reparameterised sample each."""
    d = run.data
    if split == "test":
        mu, logvar, labels = run.mu, run.logvar, d.test_y.numpy()
    else:  # only the images shown are encoded
        keep = latent.scatter_subset(len(d.train_x), seed=seed)
        mu, logvar = latent.encode_set(run.model, d.train_x[keep], d.train_y[keep])
        labels = d.train_y.numpy()[keep]
    codes = mu if z == "mean" else latent.reparameterized(mu, logvar, seed)
    total = len(d.test_x) if split == "test" else len(d.train_x)
    n = min(latent.SCATTER_POINTS, len(codes))
    what = "Encoder means" if z == "mean" else f"Reparameterised samples z = μ + ε·σ (seed {seed})"
    which = f"all {n:,} {split} images" if n == total else f"{n:,} random {split} images (of {total:,}, seed {seed})"
    plane = latent.latent_plane(run.mu)  # the plane of the test means, whichever images are shown
    axes = (
        f"a t-SNE embedding of the {mu.shape[1]}-D codes (no units)"
        if projection == "tsne" and mu.shape[1] > 2
        else plane.about
    )
    tsne = projection == "tsne" and mu.shape[1] > 2
    circles = "" if tsne else "; dashed: the prior N(0, I)'s 1- and 2-σ circles"
    pick = latent.scatter_subset(len(codes), n, seed)
    pick = pick[np.random.default_rng(seed).permutation(len(pick))]  # drawn in random order: no class on top
    points, names = latent.project(codes[pick], plane, projection)
    title = f"z of {len(pick):,} {split} images: {'encoder means' if z == 'mean' else 'reparameterised samples'}"
    return (
        plots.latent_scatter(points, labels[pick], d.classes, names, title, circles=not tsne),
        f"{what} of {which}, coloured by class; axes: {axes}{circles}.{centre_note(run)}",
    )


OFF_CENTRE = 0.5  # prior standard deviations between the codes' mean and the origin worth a word


def centre_note(run) -> str:
    """Why the test codes do not centre at (0, 0) as the textbook says (the KL term pulls the
    average code to the prior's mean), when they do not: too few epochs, a light KL weight, another
    objective; or that they sit at the origin because the posterior collapsed."""
    mean = run.mu.mean(0)
    distance = float(np.linalg.norm(mean))
    rows = getattr(run, "rows", None) or []  # codes of a model without training history: no history to blame
    last = rows[-1] if rows else {}
    if last and last.get("test_kl", 1.0) < COLLAPSED:
        return (
            f" The codes sit at the origin, but because the posterior collapsed (test KL {last['test_kl']:.3f}): "
            "they say nothing about the image, not that q(z) matches the prior."
        )
    if distance < OFF_CENTRE or not rows:
        return ""
    where = ", ".join(f"{m if abs(m) >= 0.005 else 0.0:.2f}" for m in mean[:4]) + (", ..." if len(mean) > 4 else "")
    reasons = [f"after {len(rows)} epoch{'s' * (len(rows) != 1)} the reconstruction still leads the KL"]
    objective = run.objective
    if objective.minimises_kl and objective.beta < 1:
        reasons.append(f"the KL weight β = {objective.beta:g} pulls them less than the ELBO does")
    elif not objective.minimises_kl:
        reasons = [f"this run minimised {objective.label}, not the KL"]
    return (
        f" The codes' mean is ({where}), {distance:.1f} prior standard deviations from (0, 0), where the KL "
        f"term pulls them (the textbook answer: a shift of every code, which the decoder can undo, only "
        f"adds KL): {'; '.join(reasons)}."
    )


def grid_bounds(run, range_: str = "data", scale: float = 3.0, trim: float = 0.0):
    """(plane, bounds) of the manifold grids."""
    plane = latent.latent_plane(run.mu)
    return plane, latent.latent_range(plane.coords(run.mu), range_, scale, trim)


def manifold(
    run, grid: int = 15, label: int | None = None, range_: str = "data", scale: float = 3.0, trim: float = 0.0
):
    """Figure 4 (a VAE) or 6 (a CVAE, with `label`)."""
    plane, bounds = grid_bounds(run, range_, scale, trim)
    with_label = "" if label is None else f" with label {run.data.classes[label]}"
    tiles = latent.decode_grid(run.model, plane, bounds, grid, label)
    xs, ys = latent.grid_values(bounds, grid)
    return (
        plots.manifold_grid(tiles, xs, ys, plane.names, f"{grid}×{grid} decoded z{with_label}"),
        f"Images decoded{with_label} from a {grid}×{grid} grid of z (the ticks give its values) in "
        f"{plane.about}, {_range_note(run, range_, scale, trim, bounds)}.",
    )


def _range_note(run, range_: str, scale: float, trim: float, bounds) -> str:
    span = f"first axis {bounds[0, 0]:.2f} to {bounds[0, 1]:.2f}, second {bounds[1, 0]:.2f} to {bounds[1, 1]:.2f}"
    if range_ == "scale":
        return f"over ±{scale:g} on each axis (prior standard deviations, the range chosen with --range scale)"
    which = "min/max" if trim == 0 else f"percentiles {trim:g} to {100 - trim:g}"
    note = f"over the {which} of the {len(run.mu):,} test encoder means, where the data's codes lie ({span})"
    if min(bounds[:, 1] - bounds[:, 0]) < COLLAPSED:
        note += (
            ": the codes barely move with the image (posterior collapse, KL near 0), so the grid "
            "looks uniform; vaelab report --range scale shows the decoder over the prior instead"
        )
    return note


def origin(run, label: int | None = None):
    with_label = "" if label is None else f" with label {run.data.classes[label]}"
    image = latent.decode(run.model, np.zeros((1, run.model.config.latent_dim)), label)
    title = "z = 0" + (f", label {label}" if label is not None else "")
    return plots.origin_image(image, title), f"The image decoded at z = 0, the prior's mean{with_label}."


def origins(run):
    """A CVAE's image at z = 0 under every label, one strip."""
    k = run.model.config.num_classes
    images = latent.decode(run.model, np.zeros((k, run.model.config.latent_dim)), np.arange(k))
    return (
        plots.labelled_columns(images, run.data.classes, title="label"),
        "The image decoded at z = 0, the prior's mean, under each label: what the decoder draws for a "
        "class when the code says nothing in particular.",
    )


# ---- generation ------------------------------------------------------------------------------------


def samples(run, n: int = 100, seed: int = 0, label: int | None = None):
    per_row = int(np.ceil(np.sqrt(n)))
    images = latent.samples(run.model, n, seed, label)
    which = (
        f" with label {run.data.classes[label]}"
        if label is not None
        else ", labels 0, 1, 2, ... in turn"
        if run.conditional
        else ""
    )
    return (
        plots.image_figure(tile(images, per_row), f"{n} samples, z ~ N(0, I)"),
        f"{n} images the model generates: decoder means at z ~ N(0, I) (seed {seed}){which}.",
    )


# The per-class grid's acceptance: a tile counts as its row's class only when two judges that err
# differently agree (bench/class_grid_judges.py calibrates them against a held-out judge):
CONFIDENT = 0.8  # the classifier's probability of the row's class, at least
MARGIN = 0.5  # ... and its lead over the second class: a 3/8 blob splits the two
NEIGHBOURS = 10  # the second judge: the labels of the nearest training images in pixels
VOTES = 0.6  # ... of which at least this share must be the row's class
JUDGE_IMAGES = 10_000  # training images the neighbour judge searches (seeded), bounding its cost
EMPTY = 0.35  # the grey of a place no tile passed for


def classifier_for(run):
    """(classifier, test accuracy) for the run's data (trained once and cached), or None for
    data it cannot judge (no labels, one class, images under 4 x 4 pixels)."""
    from vaelab.evaluation import can_judge, get_classifier

    if not can_judge(run.data):
        return None

    classifier, info = get_classifier(run.data)
    return classifier, info["test_accuracy"]


def judges_for(run):
    """(classifier, its test accuracy, the neighbour judge), or None where the data cannot be judged."""
    from sklearn.neighbors import KNeighborsClassifier

    checker = classifier_for(run)
    if checker is None:
        return None
    d = run.data
    pick = np.sort(np.random.default_rng(0).permutation(len(d.train_x))[:JUDGE_IMAGES])
    pixels = d.train_x[pick].flatten(1).float().numpy() / 255
    return (*checker, KNeighborsClassifier(NEIGHBOURS).fit(pixels, d.train_y.numpy()[pick]))


def recognised(checker, images: torch.Tensor) -> np.ndarray:
    """The class vaelab's classifier sees in each image (its most probable)."""
    from vaelab.evaluation import predict

    return predict(checker[0], images)[1].argmax(1)


def judged(judges, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both judges' view of each image, once: the classifier's class probabilities and the share of
    the NEIGHBOURS nearest training images of each class (the costly part: asked once per image,
    then read for any class)."""
    from vaelab.evaluation import predict

    return predict(judges[0], images)[1], judges[2].predict_proba(images.flatten(1).numpy())


def passes(views: tuple[np.ndarray, np.ndarray], c) -> np.ndarray:
    """Which images both judges call class `c` (an int, or one per image): the classifier with
    probability >= CONFIDENT and a lead >= MARGIN, and >= VOTES of the NEIGHBOURS nearest
    training images."""
    probs, votes = views
    c = np.broadcast_to(np.asarray(c), (len(probs),))
    top2 = np.sort(probs, 1)[:, -2:]
    rows = np.arange(len(probs))
    sure = (probs[rows, c] >= CONFIDENT) & (probs[rows, c] - top2[:, 0] >= MARGIN)
    return sure & (probs.argmax(1) == c) & (votes[rows, c] >= VOTES)


def accepted(judges, images: torch.Tensor, c) -> np.ndarray:
    """Which `images` both judges call class `c` (see `passes`)."""
    return passes(judged(judges, images), c)


def class_grid(run, per_class: int = 5, seed: int = 0):
    """Figure 5: a row per class. A CVAE decodes the same z ~ N(0, I) under each row's label. A VAE
    has no label to ask for, so its codes come from where each class lives: draws z ~ q(z|x) of
    random test images of the class, keeping those that two judges call the class; a place that
    none fills stays grey."""
    d, k = run.data, run.data.num_classes
    judges = judges_for(run)
    rule = (
        f"vaelab's classifier gives it probability {CONFIDENT:.0%} or more with a lead of {MARGIN:.0%} over the "
        f"next class, and {VOTES:.0%} of its {NEIGHBOURS} nearest training images (in pixels) are of the class"
    )
    if run.conditional:
        z, y = latent.class_codes(run.mu, d.test_y, k, per_class, seed, conditional=True)
        images = latent.decode(run.model, z, y)
        notes = how = None
        if judges:
            ok = accepted(judges, images, y)
            notes = [f"{ok[y == c].sum()}/{per_class} pass" for c in range(k)]
            how = f"tiles both judges call their row: {ok.sum()} of {len(y)}"
        caption = (
            f"{per_class} samples per class: {per_class} z ~ N(0, I) (seed {seed}) decoded with each row's "
            f"label, the same z in every row, so a column keeps its style while the label changes."
            + (f" A tile passes when {rule}; at the right, the tiles of each row that pass." if judges else "")
        )
    else:
        z, y, notes, right, empty = _class_codes_judged(run, per_class, seed, judges)
        images = torch.cat([latent.decode(run.model, z[y == c], c) for c in range(k)])
        images[torch.from_numpy(empty)] = EMPTY
        how = f"tiles both judges call their row: {right} of {len(y)}" if judges else None
        caption = (
            f"{per_class} samples per class, from where the class lives in z: z ~ q(z|x) of a random test "
            f"image of the class ({CANDIDATES} draws per class, seed {seed})"
            + (
                f", keeping draws that pass as the class, and when fewer than {per_class} do, draws around any "
                f"test image that pass so. A draw passes when {rule}. A grey place: no draw passed, the row "
                "cannot be filled. At the right: tiles that pass / places, and the share of the class's own "
                "draws that pass: how much of its region of z a class holds."
                if judges
                else "; the data has no labels to check them against."
            )
        )
    if judges:
        caption += f" The classifier reaches {judges[1]:.1%} on the test images."
    return plots.class_grid(images, d.classes, notes, how or ""), caption


def _class_codes_judged(run, per_class: int, seed: int, judges):
    """(z, y, notes, tiles that pass, empty places) of the VAE per-class grid. Codes are drawn from
    q(z|x) of the class's own test images first; when too few of those pass, from those of every
    test image (the decoder may draw a class where the encoder seldom puts it)."""
    labels, k = run.data.test_y.numpy(), run.data.num_classes
    own = [latent.posterior_draws(run.mu[labels == c], run.logvar[labels == c], CANDIDATES, seed + c) for c in range(k)]
    if judges is None:
        z = np.concatenate([d[:per_class] for d in own])
        return z, np.repeat(np.arange(k), per_class), None, 0, np.zeros(len(z), bool)
    pool = latent.posterior_draws(run.mu, run.logvar, CANDIDATES * k, seed)
    pool_views = judged(judges, latent.decode(run.model, pool))
    own_views = judged(judges, latent.decode(run.model, np.concatenate(own)))
    bounds = np.cumsum([0, *map(len, own)])  # class c's own draws: rows bounds[c]:bounds[c + 1]
    zs, notes, right, empty = [], [], 0, []
    for c in range(k):
        ok = passes(tuple(v[bounds[c] : bounds[c + 1]] for v in own_views), c)
        ok_pool = passes(pool_views, c)
        ranked = np.r_[np.flatnonzero(ok), np.flatnonzero(ok_pool) + CANDIDATES][:per_class]
        shown = len(ranked)
        ranked = np.r_[ranked, np.zeros(per_class - shown, int)]  # placeholders, drawn grey
        zs.append(np.concatenate([own[c], pool])[ranked])
        empty += [False] * shown + [True] * (per_class - shown)
        right += shown
        notes.append(f"{shown}/{per_class} ({ok.mean():.0%} of own draws pass)")
    return np.concatenate(zs), np.repeat(np.arange(k), per_class), notes, right, np.array(empty)


def walks(run, pairs=((1, 7), (4, 9), (3, 8)), steps: int = 10):
    d = run.data
    how = (
        "; the CVAE's label moves with z, from A's one-hot label to B's (a mix of the two in between)"
        if run.conditional
        else ""
    )
    strips = [latent.walk(run.model, d.test_x, d.test_y, a, b, steps) for a, b in pairs]
    return (
        plots.interpolation_walks(strips, [f"{d.classes[a]} → {d.classes[b]}" for a, b in pairs]),
        f"Images decoded at {steps} evenly spaced points on the straight line in z between the encoder means "
        f"of the first test image of class A and of class B (those two images at the ends){how}.",
    )


def label_swap(run):
    """A CVAE's label swap: each class's first test image, then its z under every label."""
    d = run.data
    images = latent.label_swap(run.model, d.test_x, d.test_y)
    return (
        plots.labelled_columns(images, ["input", *d.classes], [f"a {c}" for c in d.classes], "decoded with label →"),
        f"Change the label, keep the style: the first test image of each class (first column), then its "
        f"code (the encoder mean, encoded with its own label) decoded under each label {d.classes[0]} to "
        f"{d.classes[-1]} (columns): the style stays, the class changes.",
    )
