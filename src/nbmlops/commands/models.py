"""`nbmlops-models`: the registry from the command line (list, show, promote, rollback, cards).

Reads the store, the gate file and the baseline file from an env file (default env.yaml), the
same one the pipeline uses, so the commands act on the models the builds registered.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..envfile import load_env
from ..errors import PipelineError
from ..locking import project_lock
from ..monitoring.rules import gate_file
from ..registry import cards, gates, lastbuild, promotion
from ..registry.errors import RegistryError
from ..registry.store import Store, store_errors
from ..registry.versions import CHALLENGER, CHAMPION, alias_version, list_versions, version_details


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
        store = Store.from_params(env["mlflow"], args.env)
        with store_errors(store, f"running `{args.command}`"):
            _run(args, env, store)
    except (PipelineError, gates.GateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args, env: dict, store: Store) -> None:
    """One subcommand against the store."""
    if args.command == "list":
        print(f"{store.model_name} @ {store.tracking_uri}")
        print(list_versions(store).to_string(index=False))
    elif args.command == "show":
        version = args.version or alias_version(store, CHAMPION)
        if version is None:
            raise RegistryError("no champion yet; name a version")
        print(json.dumps(version_details(store, version), indent=2, default=str))
    elif args.command == "promote":
        rules = gate_file(env["gates"], env.get("selection_metric"))  # before anything is read
        with project_lock(env, "promotion"):
            version = str(args.version or alias_version(store, CHALLENGER) or "")
            shadow = lastbuild.last_build_evidence(args.env, store, version) if version else None
            print(shadow if shadow is not None else "no shadow evidence: no build scored it")
            live = lastbuild.live_labels_evidence(args.env, env, store, version) if version else []
            for found in live:
                print(found)
            held_out = lastbuild.last_build_gate(args.env, version, store)
            found = [e for e in (shadow, *live) if e is not None]
            version, result = promotion.promote(
                store, env["baseline"], rules, args.version, args.force, found, held_out
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


if __name__ == "__main__":
    sys.exit(main())
