"""The report page's content: one section per question the exercises ask, each with its numbers
and its figures (figures.py), and the page around them (pages.py).

A section is (anchor, title, items); an item is ("html", text) or ("figure", name, Figure or None,
caption), None for a figure already on disk (the evaluation's).
"""

import html

from vaelab import bands
from vaelab.models.summary import layer_rows
from vaelab.report import figures
from vaelab.report.pages import figure, page, table


def sections(run, s, evaluation: dict | None):
    """Every section that applies to the run, in order."""
    yield "model", "The model", list(model_section(run))
    yield "training", "Training", list(training_section(run))
    planar = run.model.config.latent_dim >= 2
    if planar:
        yield "latent", "The latent space", list(latent_section(run, s))
    yield "generation", "Generation", list(generation_section(run, s, planar))
    if run.conditional:
        yield "conditional", "Conditional generation", list(conditional_section(run, s, planar))
    if run.data.labelled:
        yield "classification", "Classification from the latent code", list(classification_section(run, evaluation))
    yield "quality", "How good is the model?", list(quality_section(run, evaluation))


def _figure(name: str, made) -> tuple:
    return ("figure", name, *made)


def _html(text: str) -> tuple:
    return ("html", text)


def model_section(run):
    p, c = run.config["params"], run.model.config
    yield _html(
        f"<p>{html.escape(run.config['model'])}: {p['encoder'] + p['decoder']:,} parameters, latent size "
        f"{c.latent_dim}{f', conditional on {c.num_classes} classes' if c.num_classes else ''}.</p>"
    )
    yield _html(table(("encoder", "decoder", "total"), [(p["encoder"], p["decoder"], p["encoder"] + p["decoder"])]))
    yield _figure("architecture", figures.architecture(run))
    rows = [
        (r["part"], r["layer"], r["kind"], "×".join(map(str, r["output_shape"])), r["params"])
        for r in layer_rows(run.model)
    ]
    yield _html(
        f"<details><summary>every layer</summary>"
        f"{table(('part', 'layer', 'kind', 'output shape', 'params'), rows)}</details>"
    )
    t, cfg = run.config["train"], run.config
    settings = [(k, _setting(v)) for k, v in t.items()] + [
        ("device used", cfg["device"]),
        ("created", cfg.get("created", "")),
        ("command", _command(cfg.get("command"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in cfg["versions"].items())),
    ]
    yield _html(f"<details><summary>every setting</summary>{table(('setting', 'value'), settings)}</details>")


def training_section(run):
    if not run.rows:
        yield _html("<p>No epoch has finished yet (metrics.jsonl is empty).</p>")
        return
    yield _html(metrics_html(run.rows))
    yield _figure("curves", figures.curves(run))
    yield _figure("seconds", figures.seconds(run))
    made = figures.reconstructions(run)
    if made:
        yield _figure("reconstructions", made)


def latent_section(run, s):
    yield _figure("classes", figures.examples(run))
    yield _figure("scatter", figures.scatter(run, s.z, s.split, s.projection, s.seed))
    if not run.conditional:
        yield _figure("manifold", figures.manifold(run, s.grid, None, s.range_, s.scale, s.trim))
        yield _figure("origin", figures.origin(run))


def generation_section(run, s, planar: bool):
    yield _figure("samples", figures.samples(run, s.samples, s.seed))
    if run.data.labelled:
        yield _figure("classes_grid", figures.class_grid(run, s.per_class, s.seed))
    if run.data.labelled and s.walk:
        yield _figure("walks", figures.walks(run, s.walk, s.steps))


def conditional_section(run, s, planar: bool):
    yield _figure("origins", figures.origins(run))
    if planar:
        for label in s.labels:
            yield _figure(f"manifold_label{label}", figures.manifold(run, s.grid, label, s.range_, s.scale, s.trim))
    yield _figure("label_swap", figures.label_swap(run))


def _not_evaluated(run) -> tuple:
    return _html(
        f"<p>Not measured yet: <code>vaelab evaluate {html.escape(str(run.dir))}</code>, then "
        f"<code>vaelab report {html.escape(str(run.dir))}</code> (in Python: <code>run.evaluate()</code>, "
        f"<code>run.report()</code>) puts the answers here.</p>"
    )


def classification_section(run, evaluation):
    shown = (evaluation or {}).get("figures", {})
    if not evaluation or not ({"latent_classifiers", "cvae_classifier"} & set(evaluation)):
        yield _not_evaluated(run)
        return
    if "latent_classifiers" in evaluation:
        c = evaluation["latent_classifiers"]
        encoded = " (each image encoded with its own label, as the CVAE was trained)" if run.conditional else ""
        yield _html(
            f"<p>Can the classes be told apart from z alone? Classifiers fitted to the "
            f"{c['train_images']:,} training encoder means{encoded} and scored on the test means:</p>"
        )
        yield _html(
            table(
                ("classifier on z", "test accuracy", "chance"),
                [
                    (f"{c['knn']['k']}-nearest neighbours", f"{c['knn']['accuracy']:.1%}", f"{c['chance']:.0%}"),
                    ("logistic regression", f"{c['logistic']['accuracy']:.1%}", f"{c['chance']:.0%}"),
                ],
            )
        )
        if run.conditional:
            yield _html(
                "<p>The CVAE is given the label, so its code need not hold the class: the closer these are to "
                "chance, the more of the class the label carries and the more z holds only the style. "
                "<code>vaelab compare</code> with a VAE of the same data sets the two side by side.</p>"
            )
    if "cvae_classifier" in evaluation:
        c = evaluation["cvae_classifier"]
        yield _html(
            f"<p>The CVAE as a classifier (Bayes rule): the label whose bound on log p(x|c) is highest, "
            f"on {c['images']:,} test images:</p>"
        )
        yield _html(
            table(
                ("score", "test accuracy", "chance"),
                [
                    (f"L_{c['samples_per_label']}", f"{c['iw']['accuracy']:.1%}", f"{c['chance']:.0%}"),
                    (f"ELBO ({c['samples_per_label']} samples)", f"{c['elbo']['accuracy']:.1%}", f"{c['chance']:.0%}"),
                ],
            )
        )
    for name in ("eval_confusion", "eval_cvae_confusion"):
        if name in shown:
            yield ("figure", name, None, shown[name])


def quality_section(run, evaluation):
    standing = bands.run_standing(run.config, run.rows[-1] if run.rows else None)
    if standing:
        yield _html(f"<p class='band'>{html.escape(standing)}</p>")
    if not evaluation:
        yield _not_evaluated(run)
        return
    e, iw, lat = evaluation["elbo"], evaluation["iw"], evaluation["latent"]
    every, some = f"all {e['images']:,} test images", f"{iw['images']:,} test images"
    if iw["images"] < e["images"]:
        some += f" (a seeded random subset of the {e['images']:,})"
    rows = [
        ("test ELBO, z = encoder mean (a plug-in value, not a bound)", f"{e['mean_z']['elbo']:.2f}", every, ""),
        (
            "test ELBO, z sampled once per image",
            f"{e['sampled_z']['elbo']:.2f}",
            every,
            f"± {_se(e['sampled_z']['se_images'])} over images",
        ),
        (
            f"ELBO, mean of {iw['samples']} single-sample ELBOs per image",
            f"{iw['elbo']:.2f}",
            some,
            f"± {_se(iw['elbo_se_images'])} over images",
        ),
        (
            f"importance-weighted bound L_{iw['samples']} (Burda et al. 2015), same images and samples",
            f"{iw['bound']:.2f}",
            some,
            f"± {iw['bound_se_mc']:.2f} Monte Carlo, ± {_se(iw['bound_se_images'])} over images",
        ),
        (
            f"L_{iw['samples']} − ELBO on those images (never below 0)",
            f"{iw['gap']:.2f}",
            some,
            f"± {_se(iw.get('gap_se_images'))} over images",
        ),
        ("active units (Cov of the mean > 0.01)", f"{lat['active_units']} of {lat['latent_dim']}", every, ""),
    ]
    if "sample_quality" in evaluation:
        q = evaluation["sample_quality"]
        generated = f"{q['samples']:,} generated images" if "samples" in q else "generated images"
        rows += [
            (
                "sample Fréchet distance (classifier features)",
                f"{q['frechet_distance']:.2f}",
                generated,
                f"training images vs test: {q['frechet_train_vs_test']:.2f}",
            ),
            (
                "sample confidence / class balance",
                f"{q['mean_confidence']:.1%} / {q['balance']:.3f}",
                generated,
                f"classifier test accuracy {q['classifier']['test_accuracy']:.1%}",
            ),
        ]
    yield _html(
        "<p>Nats per image. Compare bounds only on the same images: L_K is never below the ELBO of "
        "the same images and samples; a test ELBO over all the images beside L_K over a subset may "
        "sit on either side of it.</p>"
    )
    yield _html(table(("measure", "value", "images", "uncertainty, or what to compare with"), rows))
    if "note" in evaluation:
        yield _html(f"<p>{html.escape(evaluation['note'])}.</p>")


# ---- the page ----------------------------------------------------------------------------------


def render_page(run, parts, evaluation) -> str:
    c, last = run.config, run.rows[-1] if run.rows else None
    headline = f"test ELBO {last['test_elbo']:.2f} nats after {last['epoch']} epochs" if last else "no epoch finished"
    body = [
        f"<h1>vaelab run <code>{html.escape(run.dir.name)}</code></h1>",
        f"<p>{html.escape(c['model'])} on {html.escape(c['data']['name'])} ({c['data']['train_size']:,} training and "
        f"{c['data']['test_size']:,} test images): {headline}"
        f"{'; evaluated ' + html.escape(evaluation.get('created', '')) if evaluation else ''}.</p>",
        "<nav>" + " · ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in parts) + "</nav>",
    ]
    if run.model.config.latent_dim < 2:
        body.append("<p>With one latent dimension there is no latent scatter or grid (they need two).</p>")
    for key, title, items in parts:
        body.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>')
        for kind, *rest in items:
            body.append(rest[0] if kind == "html" else figure(f"figures/{rest[0]}.png", rest[2], rest[0]))
        body.append("</section>")
    return page(f"vaelab report: {run.dir.name}", "\n".join(body))


def _se(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"  # one image has no spread


def _setting(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _command(command) -> str:
    return command if isinstance(command, str) else " ".join(map(str, command or ()))


def metrics_html(rows: list[dict]) -> str:
    """The last epoch's losses and the seconds per epoch; every epoch in a folded table."""
    last = rows[-1]
    times = [r["seconds"] for r in rows]
    keys = ("train_total", "train_recon", "train_kl", "test_total", "test_recon", "test_kl", "test_elbo")
    final = table(
        (
            "after epoch",
            "train total",
            "train recon",
            "train KL",
            "test total",
            "test recon",
            "test KL",
            "test ELBO",
            "seconds per epoch (mean)",
            "slowest epoch (s)",
        ),
        [(last["epoch"], *(float(last[k]) for k in keys), sum(times) / len(times), max(times))],
    )
    every = table(list(rows[0]), [list(r.values()) for r in rows])
    return final + f"<details><summary>every epoch</summary>{every}</details>"
