"""Model cards: one HTML and one Markdown page for every registered version."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from .. import html, storage
from ..spec import THRESHOLD
from . import gates
from .evidence import held_out_window
from .store import Store
from .versions import list_versions, version_details

PURPOSE = (
    "Predicts the probability that {target!r} is positive (decision threshold {threshold}) "
    "from the features listed below. Trained on {train}; chosen on the held-out window {holdout}."
)


def card_facts(details: dict) -> dict[str, str]:
    """The rows of a card's fact table, from a version's registry details."""
    tags = {**details["run_tags"], **details["tags"]}
    return {
        "registered model": details["name"],
        "version": details["version"],
        "aliases": ", ".join(details["aliases"]) or "none",
        "candidate": tags.get("candidate", ""),
        "registered": details["created"],
        "training window": tags.get("train_window", ""),
        "held-out window": held_out_window(details),
        "data source": tags.get("data_source", ""),
        "data snapshot sha256": tags.get("data_sha256", ""),
        "raw rows / modelled rows": f"{tags.get('raw_rows', '')} / {tags.get('modelled_rows', '')}",
        "model file sha256": tags.get("sha256", ""),
        "MLflow run": details["run_id"],
        "git commit": f"{tags.get('git_commit', '')} (dirty: {tags.get('git_dirty', '')})",
        "dependency lock sha256": tags.get("lock_sha256", ""),
        "python / platform": f"{tags.get('python', '')} / {tags.get('platform', '')}",
    }


def write_cards(store: Store, folder: str | Path, gate_spec: dict, baseline_file: str,
                assets: str | Path | None = None) -> dict:  # fmt: skip
    """Cards for every version into `folder` (replaced whole); returns version -> card path.
    The evidently reports load its scripts from `assets` (`html.shared`)."""
    import mlflow

    client = store.client()
    versions = list_versions(store)["version"].astype(str).tolist()
    baseline = gates.load_baseline(baseline_file)
    staging = storage.staging_dir(folder)
    cards = {}
    for version in versions:
        details = version_details(store, version, client)
        gate = gates.check(details["metrics"], baseline, gate_spec)
        facts = card_facts(details)
        features = feature_lines(details["run_tags"])
        report = f"v{version}-performance.html"
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=details["run_id"], artifact_path="reports/performance.html", dst_path=tmp
                )
                page = Path(local).read_text(encoding="utf-8")  # evidently's scripts: once
                # the staging folder sits beside the cards' folder: the same relative links
                shared = html.shared(page, staging / report, assets)
                storage.write_text(staging / report, shared)
            except Exception:  # noqa: BLE001 - a card without its report still says what it can
                report = ""
        tags = details["run_tags"]
        purpose = PURPOSE.format(
            target=tags.get("target", "target"),
            threshold=f"{float(details['params'].get('decision_threshold') or THRESHOLD):.4g}",
            train=tags.get("train_window", "?"),
            holdout=held_out_window(details) or "?",
        )
        (staging / f"v{version}.md").write_text(
            _markdown(facts, purpose, details["params"], gate, features, report), encoding="utf-8"
        )
        body = [
            html.para(purpose),
            html.table(pd.DataFrame(list(facts.items()), columns=["", "value"])),
            html.heading("Held-out metrics and gate status (against the committed baseline)"),
            html.table(gate.table, {"pass": "pass", "FAIL": "fail"}),
            html.link_list([(report, "evidently performance report")]) if report else "",
            html.heading("Parameters"),
            html.table(pd.DataFrame(list(details["params"].items()), columns=["param", "value"])),
            html.heading("Features"),
            *[html.para(line) for line in features],
        ]
        title = f"Model card: {store.model_name} v{version}"
        page = html.page(title, "".join(body), home="../index.html")
        (staging / f"v{version}.html").write_text(page, encoding="utf-8")
        cards[version] = Path(folder) / f"v{version}.html"
    storage.replace_dir(staging, Path(folder))
    return cards


def feature_lines(tags: dict) -> list[str]:
    """What the model sees, what a request sends, and the derivation between them."""
    lines = [f"Seen by the model: {tags.get('features', '').replace(',', ', ')}."]
    if tags.get("inputs") and tags["inputs"] != tags.get("features"):
        lines.append(f"A request sends: {tags['inputs'].replace(',', ', ')}.")
    if tags.get("derived_by"):
        lines.append(f"Derived inside the model by {tags['derived_by']}.")
    return lines


def _markdown(facts, purpose, params, gate, features, report) -> str:
    lines = [f"# Model card: {facts['registered model']} v{facts['version']}", "", purpose, ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts.items()]
    lines += ["", "## Held-out metrics and gate status", "", gate.table.to_markdown(index=False)]
    lines += ["", "## Parameters", ""] + [f"- {k}: {v}" for k, v in params.items()]
    lines += ["", "## Features", ""] + [f"{line}  " for line in features] + [""]
    if report:
        lines += [f"[evidently performance report]({report})", ""]
    return "\n".join(lines)
