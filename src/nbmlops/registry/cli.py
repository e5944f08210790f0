"""`nbmlops-models`: the registry from the command line (list, show, promote, rollback, cards).

Reads the store, the gate file and the baseline file from an env file (default env.yaml), the
same one the pipeline uses, so the commands act on the models the builds registered.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..envfile import load_env
from ..errors import ConfigError, PipelineError
from ..locking import project_lock
from ..spec import BATCH
from . import cards, evidence, gates, promotion
from . import store as registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbmlops-models", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.yaml", help="env file (default: env.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every version with its aliases and held-out metrics")
    show = sub.add_parser("show", help="one version in full (default: the champion)")
    show.add_argument("version", nargs="?")
    promote = sub.add_parser("promote", help="make a version champion and rewrite the baseline")
    promote.add_argument("version", nargs="?", help="default: the challenger")
    promote.add_argument("--force", action="store_true", help="promote even without improvement")
    sub.add_parser("rollback", help="make the previous champion champion again")
    cards_cmd = sub.add_parser("cards", help="write the model cards into a folder")
    cards_cmd.add_argument("folder")
    args = parser.parse_args(argv)

    try:
        env = load_env(args.env)
        store = registry.Store.from_params(env["mlflow"], args.env)
        with registry.store_errors(store, f"running `{args.command}`"):
            _run(args, env, store)
    except (PipelineError, gates.GateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args, env: dict, store: registry.Store) -> None:
    """One subcommand against the store."""
    if args.command == "list":
        print(f"{store.model_name} @ {store.tracking_uri}")
        print(registry.list_versions(store).to_string(index=False))
    elif args.command == "show":
        version = args.version or registry.alias_version(store, registry.CHAMPION)
        if version is None:
            raise registry.RegistryError("no champion yet; name a version")
        print(json.dumps(registry.version_details(store, version), indent=2, default=str))
    elif args.command == "promote":
        with project_lock(env, "promotion"):
            version = str(args.version or registry.alias_version(store, registry.CHALLENGER) or "")
            shadow = last_build_evidence(args.env, store, version) if version else None
            print(shadow if shadow is not None else "no shadow evidence: no build scored it")
            live = live_labels_evidence(args.env, env, store, version) if version else None
            if live is not None:
                print(live)
            held_out = last_build_gate(args.env, version, store)
            found = [e for e in (shadow, live) if e is not None]
            version, result = promotion.promote(
                store, env["baseline"], gates.of_env(env), args.version, args.force, found, held_out
            )
        where = ("the last build's, against the champion on the same rows" if held_out else
                 "against the committed baseline")  # fmt: skip
        print(f"held-out gate ({where}):\n{result}")
        print(f"{store.model_name} v{version} is champion; {env['baseline']} rewritten.")
    elif args.command == "rollback":
        with project_lock(env, "rollback"):
            old, new = promotion.rollback(store, env["baseline"])
        print(f"{store.model_name}: champion moved back from v{old} to v{new}; "
              f"{env['baseline']} rewritten.")  # fmt: skip
    elif args.command == "cards":
        written = cards.write_cards(store, args.folder, gates.of_env(env), env["baseline"])
        print("\n".join(str(p) for p in written.values()))


def last_build_evidence(env_file: str, store: registry.Store, version: str):
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
    champion = registry.alias_version(store, registry.CHAMPION)
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
    windows = [evidence.held_out_window(registry.version_details(store, v))
               for v in (version, champion)]  # fmt: skip
    spec = FeatureSpec.read(files["spec"])
    columns = [BATCH, spec.target, "served_proba", "challenger_proba", "served_role",
               "served_threshold", "challenger_threshold"]  # fmt: skip
    scores = pq.read_table(files["scores"], columns=columns, read_dictionary=[BATCH, "served_role"],
                           filters=[(BATCH, "in", real or [""])]).to_pandas()  # fmt: skip
    return evidence.shadow_evidence(scores, spec.target, real, windows,
                                    gates.of_env(layout.env))  # fmt: skip


def live_labels_evidence(env_file: str, env: dict, store: registry.Store, version: str):
    """The scoring service's archive and labels as evidence for `version` against the
    champion, or None when there is no champion or no service archive."""
    from ..settings import ServingSettings

    champion = registry.alias_version(store, registry.CHAMPION)
    if champion is None or not env.get("serving"):
        return None
    folder = Path(env_file).resolve().parent / ServingSettings.from_params(env["serving"]).archive
    if not folder.is_dir():
        return None
    return evidence.live_evidence(folder, champion, version, gates.of_env(env))


#: The gate table's columns, in the order `gates.check` writes them.
GATE_COLUMNS = ["metric", "baseline", "challenger", "delta", "allowed", "status"]


def last_build_gate(env_file: str, version: str, store: registry.Store) -> gates.GateResult | None:
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
    champion = registry.alias_version(store, registry.CHAMPION)
    if champion is None or found.get("gate_against") != champion:
        return None
    table = pd.DataFrame(found["gate"])[GATE_COLUMNS]
    passed = bool((table["status"] == "pass").all())
    return gates.GateResult(table, passed, passed and bool(found.get("promotable")))


if __name__ == "__main__":
    sys.exit(main())
