"""What the last build and the scoring service left for a promotion: the challenger's shadow
scoring beside the champion, its live labels, and the held-out gate the build applied.

`nbmlops-models promote` and `make propose` read them from an env file's products.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..spec import BATCH
from . import evidence, gates
from .store import Store
from .versions import CHAMPION, alias_version, version_details


def last_build_evidence(env_file: str, store: Store, version: str):
    """The last build's shadow scoring of `version` beside the champion, or None when that
    build scored no such pair (no build yet, another challenger, another champion)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from ..layout import Layout
    from ..spec import CONTROL, FeatureSpec
    from ..storage import read_json

    try:
        layout = Layout.from_env(env_file)
    except ConfigError:  # an env file of the registry alone names no build products
        return None
    files = {key: layout.product(task, key) for task, key in
             (("score", "scores"), ("score", "shadow"), ("ingest", "batches"),
              ("features", "spec"))}  # fmt: skip
    if not all(path.is_file() for path in files.values()):
        return None
    shadow = read_json(files["shadow"])
    champion = alias_version(store, CHAMPION)
    if champion is None:
        return evidence.no_evidence("no champion to compare with: the first promotion rests on "
                                    "the held-out gate")  # fmt: skip
    if str(shadow.get("challenger")) != version or shadow.get("champion") != champion:
        return evidence.no_evidence(
            f"the last build shadowed v{shadow.get('challenger')} beside "
            f"v{shadow.get('champion')}, not v{version} beside v{champion}"
        )
    # names read as categories, scores of the real batches only: a batch of millions of rows
    # costs its probabilities and labels, not its rows' strings
    batches = pq.read_table(files["batches"], columns=[BATCH, CONTROL],
                            read_dictionary=[BATCH, CONTROL]).to_pandas()  # fmt: skip
    real = [str(b) for b in pd.unique(batches.loc[batches[CONTROL] == "", BATCH])]
    windows = [evidence.held_out_window(version_details(store, v))
               for v in (version, champion)]  # fmt: skip
    spec = FeatureSpec.read(files["spec"])
    columns = [BATCH, spec.target, "served_proba", "challenger_proba", "served_role",
               "served_threshold", "challenger_threshold"]  # fmt: skip
    scores = pq.read_table(files["scores"], columns=columns, read_dictionary=[BATCH, "served_role"],
                           filters=[(BATCH, "in", real or [""])]).to_pandas()  # fmt: skip
    return evidence.shadow_evidence(scores, spec.target, real, windows,
                                    gates.of_env(layout.env))  # fmt: skip


def live_labels_evidence(env_file: str, env: dict, store: Store, version: str) -> list:
    """The scoring service's archive and labels as evidence for `version` against the
    champion: its shadow scores beside the champion's answers, and its online experiment
    when it answered as the canary; empty when there is no champion or no service archive."""
    from ..settings import ExperimentSettings, ServingSettings

    champion = alias_version(store, CHAMPION)
    if champion is None or not env.get("serving"):
        return []
    serving = ServingSettings.from_params(env["serving"], env_file)
    folder = Path(env_file).resolve().parent / serving.archive
    if not folder.is_dir():
        return []
    rules = serving.experiment or ExperimentSettings.from_params({"share": 0}, env_file)
    found = evidence.experiment_evidence(folder, champion, version, rules)
    return [evidence.live_evidence(folder, champion, version, gates.of_env(env))] + (
        [found] if found else []
    )


#: The gate table's columns, in the order `gates.check` writes them.
GATE_COLUMNS = ["metric", "baseline", "challenger", "delta", "allowed", "status"]


def last_build_gate(env_file: str, version: str, store: Store) -> gates.GateResult | None:
    """The held-out gate the last build's evaluate task applied to `version`, against the
    current champion scored on the same held-out rows; None when that build registered another
    version or gated it against another champion (or the committed metrics)."""
    import pandas as pd

    from ..layout import Layout
    from ..storage import read_json

    try:
        path = Layout.from_env(env_file).product("evaluate", "metrics")
    except ConfigError:
        return None
    if not version or not path.is_file():
        return None
    found = read_json(path)
    if str(found.get("version")) != version:
        return None
    champion = alias_version(store, CHAMPION)
    if champion is None or found.get("gate_against") != champion:
        return None
    table = pd.DataFrame(found["gate"])[GATE_COLUMNS]
    passed = bool((table["status"] == "pass").all())
    return gates.GateResult(table, passed, passed and bool(found.get("promotable")))
