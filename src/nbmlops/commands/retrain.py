"""`make retrain`, `make propose` and `make follow`: the env's `retraining` policy, as the
scheduled job applies it.

    python -m nbmlops.commands.retrain retrain --env env.yaml  # build on the latest periods if due
    python -m nbmlops.commands.retrain propose --env env.yaml  # a reviewed promotion, if it wins
    python -m nbmlops.commands.retrain follow --env env.yaml   # the champion follows the baseline

The policy is due when the champion has not seen `every` labelled periods (its held-out window
ends before them), or when the monitor's verdict of the newest batch it served matches
`trigger`. `retrain` then builds with `split: latest`: the candidates train on the policy's
`window` before the held-out periods, and the newest `shadow_periods` periods are batches that
the challenger scores beside the champion. `propose` writes the challenger into the baseline
file only when the policy is due and the challenger passes the gates and improves on the rows
both models scored; the registry is not touched, so the change is a commit to review (the
scheduled workflow opens it as a pull request). Once it is merged, `follow` moves the
registry's champion to the version the baseline file names, after checking that version's
files against the hashes the file records.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import storage
from ..errors import ConfigError, PipelineError
from ..layout import Layout
from ..locking import project_lock
from ..registry import evidence, gates, lastbuild, promotion, versions
from ..registry.errors import IntegrityError, RegistryError
from ..registry.loading import manifest_sha256
from ..registry.runs import MANIFEST_TAG
from ..registry.store import Store, store_errors
from ..settings import RetrainPolicy
from ..spec import CONTROL, PERIOD, FeatureSpec, period_after

#: The pull request's text, beside the env's reports.
PROPOSAL = "proposal.md"


@dataclass(frozen=True)
class Due:
    due: bool
    reasons: list[str]
    champion: str | None

    def __str__(self) -> str:
        head = "retraining is due" if self.due else "retraining is not due"
        return f"{head}: {'; '.join(self.reasons)}"


def policy_of(layout: Layout) -> RetrainPolicy:
    return RetrainPolicy.from_params(layout.env.get("retraining"),
                                     f"{layout.env_file.name}: retraining")  # fmt: skip


def labelled_periods(layout: Layout) -> list[str]:
    """Every period of the last build's data whose rows all have labels, in order: the
    training and held-out windows, then the real batches (not the control batches)."""
    import pandas as pd

    spec = layout.product("features", "spec")
    if not spec.is_file():
        raise ConfigError(f"{spec} is missing: run `make build` first")
    target = FeatureSpec.read(spec).target
    found = []
    for key in ("train", "holdout", "batches"):
        path = layout.product("ingest", key)
        if not path.is_file():
            raise ConfigError(f"{path} is missing: run `make build` first")
        frame = pd.read_parquet(path)
        if CONTROL in frame:
            frame = frame[frame[CONTROL] == ""]
        labelled = frame.groupby(PERIOD, sort=False)[target].apply(lambda y: y.notna().all())
        found += [str(p) for p, ok in labelled.items() if ok]
    return list(dict.fromkeys(found))


def is_due(layout: Layout, store: Store, policy: RetrainPolicy) -> Due:
    """What the policy says of the last build: the labelled periods a retrain would learn from
    that the champion never saw (those after its held-out window, less the newest
    `shadow_periods` a retrain keeps for the challenger to shadow), and the monitor's verdict
    of the newest batch the champion answered."""
    champion = versions.alias_version(store, versions.CHAMPION)
    if champion is None:
        return Due(False, ["the registry has no champion yet (`make promote` makes the first; "
                           "the scheduled job needs a shared MLflow store)"], None)  # fmt: skip
    tests_file = layout.product("monitor", "tests")
    if not tests_file.is_file():
        raise ConfigError(f"{tests_file} is missing: run `make build` first")
    batches = [b for b in storage.read_json(tests_file)["batches"] if not b["control"]]
    with store_errors(store, "reading the champion"):
        details = versions.version_details(store, champion)
    held = evidence.held_out_window(details)
    end = evidence.window_end(held)
    unseen = [p for p in labelled_periods(layout) if period_after(p, end)]
    usable = max(0, len(unseen) - policy.shadow_periods)
    reasons, due = [], False
    if policy.every:
        due = policy.due_after(usable)
        reasons.append(f"the champion v{champion} was held out on {held}; a retrain would learn "
                       f"from {usable} labelled period(s) it never saw ({len(unseen)} after it, "
                       f"less {policy.shadow_periods} kept to shadow); the policy retrains "
                       f"after {policy.every}")  # fmt: skip
    if policy.trigger != "never":
        served = [b for b in batches if str(b.get("served_by", "")) == f"v{champion}"]
        if served:
            newest = served[-1]
            hit = policy.triggered_by(newest["status"])
            due |= hit
            reasons.append(
                f"the newest batch it answered, {newest['batch']}, is "
                f"{newest['status']} (the policy retrains on {policy.trigger})"
            )
        else:
            reasons.append(f"no batch of the last build was answered by the champion "
                           f"v{champion}, so its monitoring cannot trigger retraining")  # fmt: skip
    if not reasons:
        reasons.append("the policy never retrains (every: 0, trigger: never)")
    return Due(due, reasons, champion)


def retrain_args(env_file: str, policy: RetrainPolicy) -> list[str]:
    """The build that trains on the latest periods the policy names."""
    window = "null" if policy.window == "expanding" else str(policy.window)
    return [sys.executable, "-m", "nbmlops.build.run", "--env", env_file,
            "--env--data--split", "latest", "--env--data--train_periods", window,
            "--env--data--batch_periods", str(max(1, policy.shadow_periods))]  # fmt: skip


#: What `retrain` decided, beside the build's products; `propose` acts on it.
DECISION = "retrain.json"


def snapshot_of(layout: Layout) -> str:
    manifest = layout.product("ingest", "manifest")
    return storage.read_json(manifest).get("sha256", "") if manifest.is_file() else ""


def retrain(env_file: str) -> int:
    layout = Layout.from_env(env_file)
    store = Store.from_params(layout.env["mlflow"], env_file)
    policy = policy_of(layout)
    found = is_due(layout, store, policy)
    print(found, flush=True)
    decision = Path(layout.env["products"]) / DECISION
    if not found.due:
        storage.write_json(decision, {"due": False, "reasons": found.reasons,
                                      "champion": found.champion, "built": False,
                                      "snapshot": snapshot_of(layout)})  # fmt: skip
        return 0
    missing = [k for k in ("split", "train_periods", "batch_periods")
               if k not in (layout.env.get("data") or {})]  # fmt: skip
    if missing:
        raise ConfigError(f"{env_file}: the data block needs {', '.join(missing)} (e.g. split: "
                          "first, train_periods: null, batch_periods: 1) for the retrain build "
                          "to set them")  # fmt: skip
    if (layout.env.get("data") or {}).get("split") != "latest":
        print(f"note: {env_file} builds with data.split: first, so the next build's monitoring "
              "compares a champion trained on later periods with a window it learnt from; a "
              "project on this schedule should set data.split: latest", flush=True)  # fmt: skip
    print(f"building on the latest periods: {policy.describe()}", flush=True)
    code = subprocess.run(retrain_args(env_file, policy), check=False).returncode
    storage.write_json(decision, {"due": True, "reasons": found.reasons,
                                  "champion": found.champion, "built": code == 0,
                                  "snapshot": snapshot_of(layout)})  # fmt: skip
    return code


def decided(layout: Layout, store: Store, policy: RetrainPolicy) -> Due:
    """What `retrain` decided on this data for this champion, or a fresh decision."""
    path = Path(layout.env["products"]) / DECISION
    champion = versions.alias_version(store, versions.CHAMPION)
    if path.is_file():
        found = storage.read_json(path)
        if found.get("champion") == champion and found.get("snapshot") == snapshot_of(layout):
            if found["due"] and not found.get("built"):
                return Due(False, found["reasons"] + ["but the retrain build failed"], champion)
            return Due(found["due"], found["reasons"], champion)
    return is_due(layout, store, policy)


def propose(env_file: str, output: Path | None) -> int:
    """The challenger into the baseline file when the policy is due and it wins on the rows
    both models scored; the registry stays as it is."""
    layout = Layout.from_env(env_file)
    env = layout.env
    store = Store.from_params(env["mlflow"], env_file)
    policy = policy_of(layout)
    found = decided(layout, store, policy)
    print(found)
    if not found.due:
        return 0
    challenger = versions.alias_version(store, versions.CHALLENGER)
    if challenger is None or challenger == found.champion:
        print("nothing to propose: the challenger is the champion")
        return 0
    shadow = lastbuild.last_build_evidence(env_file, store, challenger)
    if shadow is None or shadow.gate is None:
        print(f"nothing to propose: {shadow if shadow is not None else 'no build scored it'}")
        return 0
    print(shadow)
    if len(shadow.batches) < policy.shadow_periods:
        print(f"nothing to propose: v{challenger} has shadowed {len(shadow.batches)} of the "
              f"policy's {policy.shadow_periods} period(s)")  # fmt: skip
        return 0
    held_out = lastbuild.last_build_gate(env_file, challenger, store)
    if held_out is None:
        print(f"nothing to propose: the last build did not gate v{challenger} against the "
              f"champion v{found.champion} on the same held-out rows")  # fmt: skip
        return 0
    decision = promotion.decide(held_out, [shadow], needs_evidence=True)
    if not decision.allowed:
        print(f"nothing to propose: v{challenger} does not win: {decision.why}")
        return 0
    with project_lock(env, "proposal"):
        storage.write_json(env["baseline"], promotion.baseline_for(store, challenger))
    text = proposal_text(store.model_name, challenger, found, shadow, held_out, policy)
    out = output or layout.reports / PROPOSAL
    storage.write_text(out, text)
    print(f"proposed: v{challenger} written to {env['baseline']}; the text is {out}")
    return 0


def proposal_text(model: str, version: str, found: Due, shadow: evidence.Evidence,
                  held_out: gates.GateResult, policy: RetrainPolicy) -> str:  # fmt: skip
    return "\n".join([
        f"# Promote {model} v{version} to champion", "",
        f"Policy: {policy.describe()}.", "", f"Why now: {'; '.join(found.reasons)}.", "",
        "## Evidence on the rows both models scored", "", "```", str(shadow), "```", "",
        "## Held-out gate (the champion scored on the same held-out rows)", "", "```",
        str(held_out), "```", "",
        f"Merging this changes only the baseline file. Then `make follow` (or the next "
        f"scheduled run) moves the registry's champion to v{version}.", "",
    ])  # fmt: skip


def follow(env_file: str) -> int:
    """Move the champion to the version the committed baseline file names, if it differs."""
    layout = Layout.from_env(env_file)
    env = layout.env
    store = Store.from_params(env["mlflow"], env_file)
    record = gates.load_baseline(env["baseline"])
    if record is None:
        print(f"{env['baseline']} names no champion yet")
        return 0
    version = str(record["version"])
    client = store.client()
    champion = versions.alias_version(store, versions.CHAMPION, client)
    if champion == version:
        print(f"the champion is v{version}, as {env['baseline']} records")
        return 0
    recorded = record.get("manifest_sha256")
    if not recorded:
        raise IntegrityError(
            f"{env['baseline']} names v{version} but records no hashes of its files (it was "
            "written before they were kept); promote it with `make promote VERSION=...`"
        )
    from mlflow.exceptions import MlflowException

    try:
        with store_errors(store, f"reading v{version}"):
            details = versions.version_details(store, version, client)
    except MlflowException:
        raise RegistryError(
            f"{env['baseline']} names v{version}, which {store.model_name!r} in this store does "
            "not hold: the scheduled job needs the shared store the promotion was made in "
            "(MLFLOW_TRACKING_URI)"
        ) from None
    actual = manifest_sha256(details["tags"].get(MANIFEST_TAG, ""))
    if recorded != actual:
        raise IntegrityError(
            f"{env['baseline']} names v{version} with files hashed {str(recorded)[:16]}…, "
            f"but the registry's v{version} has {str(actual)[:16]}…; refusing to serve it"
        )
    history = versions.champion_history(store, client)
    with project_lock(env, "champion change"):
        versions.set_champion(store, version, history + [version], expected=history)
    print(f"the champion moved from v{champion} to v{version}, as {env['baseline']} records")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["retrain", "propose", "follow"])
    parser.add_argument("--env", default="env.yaml", help="the env file (default: env.yaml)")
    parser.add_argument("--output", type=Path, help="propose: where to write the PR's text")
    args = parser.parse_args(argv)
    try:
        if args.command == "retrain":
            return retrain(args.env)
        if args.command == "propose":
            return propose(args.env, args.output)
        return follow(args.env)
    except PipelineError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
