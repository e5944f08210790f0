"""The index task: a project's reports page (a run summary and a link to every report the
build wrote), its summary for the front page, and the front page of every project built here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .. import html, storage
from ..layout import BACKTEST_PAGES, BENCH_PAGES, LIVE_PAGES, LOAD_PAGES, SOAK_PAGES
from ..registry import cards, gates
from ..registry.store import Store, store_errors
from ..registry.versions import list_versions
from ..spec import FeatureSpec


def _products(upstream) -> dict[str, Mapping]:
    """Task name to its products, with grid groups (e.g. `train-*`) flattened."""
    flat = {}
    for name in upstream:
        value = upstream[name]
        if hasattr(value, "to_json_serializable"):  # one task's MetaProduct
            flat[name] = value.to_json_serializable()
        else:  # a grid group: task name -> MetaProduct
            flat.update({k: v.to_json_serializable() for k, v in value.items()})
    return flat


#: A notebook page's inline styles and scripts over this size are shared by every page.
NOTEBOOK_SHARED_BYTES = 5_000


def notebooks_to_html(notebooks: dict[str, str], folder: str | Path,
                      assets: str | Path | None = None) -> dict[str, Path]:  # fmt: skip
    """Executed notebooks as HTML pages, one per task, that need no network: JupyterLab's
    styles once in `assets` for every page (`html.shared`)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="")
    staging = storage.staging_dir(folder)
    pages = {}
    for task, path in notebooks.items():
        body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
        # the staging folder sits beside `folder`: the same relative links
        body = html.shared(body, staging / f"{task}.html", assets, NOTEBOOK_SHARED_BYTES)
        (staging / f"{task}.html").write_text(body, encoding="utf-8")
        pages[task] = Path(folder) / f"{task}.html"
    storage.replace_dir(staging, Path(folder))
    return pages


def plot_history(versions: pd.DataFrame, batches: pd.DataFrame):
    """Held-out metrics over registered versions, and drift and ROC AUC over batches."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    ordered = versions.sort_values("version")
    for metric, style in (("roc_auc", "o-"), ("pr_auc", "s-"), ("brier", "^--")):
        axes[0].plot(ordered["version"].astype(str), ordered[metric], style, label=metric)
    axes[0].set(title="Held-out metrics by model version", xlabel="version")
    real = batches[batches["control"] == ""]
    axes[1].bar(
        real["batch"], real["drift_share"], color="#5677fc", label="share of drifted features"
    )
    if "roc_auc" in real:
        axes[1].plot(real["batch"], real["roc_auc"], "o-", color="#d9480f", label="ROC AUC")
    axes[1].set_title("Drift and performance by batch")
    axes[1].tick_params(axis="x", rotation=45)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: The documentation site under the site's folder (`site_dir` in mkdocs.yml), when built.
DOCS_FOLDER = "docs"


# Short on purpose: to decide whether a function task changed, Ploomber normalises its source
# with autopep8 (about 0.07 s per 1,000 characters, once for each of its products; the body was
# 2.5 s of a no-op rebuild: docs/ploomber-upstream.md, finding 2). The module's content is
# tracked apart (build/inputs.py), so an edit of `write_index` still reruns the task.
def build_index(product, upstream, mlflow, gates_file, selection_metric, baseline_file, site,
                assets=None) -> None:  # fmt: skip
    """The index task of pipeline.yaml."""
    write_index(product, upstream, mlflow, gates_file, selection_metric, baseline_file, site,
                assets)  # fmt: skip


def write_index(
    product,
    upstream,
    mlflow: dict,
    gates_file: str,
    selection_metric: str,
    baseline_file: str,
    site: str,
    assets: str | None = None,
) -> None:
    """Executed notebooks as HTML, model cards, the project's reports page and summary, then
    the front page of every project under `site`."""
    # Here, not at import: every Ploomber command imports this module to load pipeline.yaml,
    # and drift brings scikit-learn (0.8 s)
    from ..monitoring import drift, verdict

    products = _products(upstream)
    store = Store.from_params(mlflow)
    with store_errors(store, "writing the model cards"):
        cards.write_cards(store, product["cards"], gates.load_gates(gates_file, selection_metric),
                          baseline_file, assets)  # fmt: skip
        versions = list_versions(store)
    root = Path(str(product["index"])).parent
    notebook_pages = notebooks_to_html(
        {name: str(p["nb"]) for name, p in products.items() if "nb" in p},
        str(product["notebooks"]),
        assets,
    )

    def rel(path) -> str:
        return os.path.relpath(str(path), root)

    manifest = storage.read_json(products["ingest"]["manifest"])
    spec = FeatureSpec.read(products["features"]["spec"])
    best = storage.read_json(products["evaluate"]["best"])
    metrics = storage.read_json(products["evaluate"]["metrics"])
    tests = storage.read_json(products["monitor"]["tests"])
    shadow_info = storage.read_json(products["score"]["shadow"])
    batches = [b for b in tests["batches"] if not b["control"]]
    failing = sum(b["status"] == "fail" for b in batches)
    watched = verdict.summary(tests["batches"])
    gates_passed = all(r["status"] == "pass" for r in metrics["gate"])
    candidates = pd.DataFrame(metrics["candidates"]).T.reset_index(names="model")
    batch_table = pd.DataFrame(tests["batches"])
    monitoring_dir = Path(products["monitor"]["summary"]).parent
    # Written by `make bench`, `make load`, `make soak`, `make backtest` and `make live`, when
    # they have run.
    measured = [
        (root / BACKTEST_PAGES / "index.html", "Backtest of retraining policies (make backtest)"),
        (root / LIVE_PAGES / "index.html", "Live performance from labelled requests (make live)"),
        (root / BENCH_PAGES / "index.html", "Benchmark (make bench)"),
        (root / LOAD_PAGES / "index.html", "Load test of the scoring service (make load)"),
        (root / SOAK_PAGES / "index.html", "Soak test of the scoring service (make soak)"),
    ]
    bench_link = [(rel(page), label) for page, label in measured if page.is_file()]
    body = [
        html.verdict(
            overall("pass" if gates_passed else "fail", watched.status),
            [
                f"gates {'pass' if gates_passed else 'fail'}",
                f"monitoring {watched.status or 'not run'}: {watched.text}",
            ],
        ),  # fmt: skip
        html.cards(
            {
                "source": manifest["source"],
                "snapshot": manifest["sha256"][:12],
                "rows modelled": spec.counts["rows"],
                "champion": f"v{shadow_info['champion']}"
                if shadow_info["champion"]
                else "none yet",
                "challenger": f"v{best['version']} ({best['model']})",
                f"holdout {best['selection_metric']}": best["holdout"][best["selection_metric"]],
                "gates": "pass" if gates_passed else "FAIL",
                "batches failing": f"{failing} / {len(batches)}",
            }
        ),
        html.heading("Reports"),
        html.link_list(
            [
                (rel(products["quality"]["page"]), "Data quality (contract checks)"),
                (rel(products["evaluate"]["performance"]), "Best model on the held-out window"),
                (rel(products["monitor"]["summary"]), "Monitoring: drift and performance by batch"),
                (rel(products["evaluate"]["metrics"]), "metrics.json"),
                (rel(products["monitor"]["tests"]), "monitoring tests.json"),
            ]
            + bench_link
        ),
        html.heading("Over time"),
        html.figure(plot_history(versions, drift.summary_frame(tests["batches"]))),
        html.heading("Model registry (each version links to its model card)"),
        html.table(
            versions,
            {"pass": "pass"},
            links={
                "version": [rel(Path(product["cards"]) / f"v{v}.html") for v in versions["version"]]
            },
        ),
        html.heading("Serving events"),
        html.para("; ".join(shadow_info["events"]) or "The champion served every batch."),
        html.heading("Candidates on the held-out window"),
        html.table(candidates[["model", "roc_auc", "pr_auc", "f1", "recall", "brier"]]),
        html.heading("Monitoring batches"),
        html.table(
            batch_table[
                ["batch", "control", "rows", "drift_share", "prediction_drift", "status"]
            ].drop(columns=[] if (batch_table["control"] != "").any() else ["control"]),
            {"pass": "pass", "fail": "fail"},
            links={"batch": [rel(monitoring_dir / b["report"]) for b in tests["batches"]]},
        ),
        html.heading("Executed notebooks"),
        html.link_list([(rel(page), name) for name, page in notebook_pages.items()]),
        html.heading("Rows on the way to the model"),
        html.table(pd.DataFrame(list(spec.counts.items()), columns=["count", "rows"])),
    ]
    title = f"{root.name}: pipeline reports"
    front = os.path.relpath(Path(site) / "index.html", root)
    storage.write_text(
        str(product["index"]), html.page(title, "".join(body), front, "all projects")
    )
    storage.write_json(str(product["summary"]), {
        "project": root.name,
        "model_name": store.model_name,
        "source": manifest["source"],
        "rows": spec.counts["rows"],
        "champion": shadow_info["champion"],
        "challenger": best["version"],
        "gates": "pass" if gates_passed else "fail",
        "batches": len(batches),
        "batches_failing": failing,
        "monitoring": {"status": watched.status, "text": watched.text, "counts": watched.counts},
        "built": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    })  # fmt: skip
    if assets:
        html.prune_assets(assets, root)
    write_front_page(site, Path(str(product["summary"])).name)


def overall(gates: str, monitoring: str) -> str:
    """The worse of the gates' result and the monitoring's status (pass, warn, fail)."""
    order = ["pass", "warn", "fail"]
    return max((gates, monitoring or "pass"), key=lambda s: order.index(s) if s in order else 2)


def write_front_page(site: str | Path, summary_name: str) -> Path:
    """`site`/index.html: one row per project whose reports folder under `site` holds a
    summary (`summary_name`: its file name, the index task's product in pipeline.yaml), linking to
    that project's own reports page."""
    site = Path(site)
    rows = []
    for path in sorted(site.glob(f"*/{summary_name}")):
        summary = storage.read_json(path)
        watched = summary.get("monitoring") or {  # a summary written before warnings counted
            "status": "fail" if summary["batches_failing"] else "pass",
            "text": f"{summary['batches_failing']} of {summary['batches']} batches fail "
                    "(built before warnings were counted: build again)"}  # fmt: skip
        rows.append({
            "project": summary["project"],
            "verdict": overall(summary["gates"], watched["status"]),
            "gates": summary["gates"],
            "monitoring": watched["text"],
            "model": summary["model_name"],
            "data": summary["source"],
            "rows": summary["rows"],
            "champion": f"v{summary['champion']}" if summary["champion"] else "none yet",
            "challenger": f"v{summary['challenger']}",
            "last build": summary["built"],
        })  # fmt: skip
    links = [f"{path.parent.name}/index.html" for path in sorted(site.glob(f"*/{summary_name}"))]
    body = html.para(
        "Every project built in this folder, its verdict first (the worse of its "
        "gates and its newest monitored batch); each links to its own reports."
    )
    if (site / DOCS_FOLDER / "index.html").is_file():
        body += html.link_list([(f"{DOCS_FOLDER}/index.html", "Documentation (make docs)")])
    body += html.table(pd.DataFrame(rows), {"pass": "pass", "fail": "fail", "warn": "warn"},
                       links={"project": links}, wrap=("monitoring",))  # fmt: skip
    return storage.write_text(site / "index.html", html.page("Projects", body, home=None))
