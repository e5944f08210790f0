"""`make retrain`, `make propose` and `make follow`: the env's `retraining` policy, as the
scheduled job applies it.

    python -m nbmlops.tools.retrain retrain --env env.yaml   # build on the latest periods, if due
    python -m nbmlops.tools.retrain propose --env env.yaml   # a reviewed promotion, if it wins
    python -m nbmlops.tools.retrain follow --env env.yaml    # the champion follows the baseline

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
from ..locking import LOCK_FILE, ProjectLock
from ..registry import cli, evidence, gates, promotion
from ..registry import store as registry
from ..settings import RetrainPolicy

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


def is_due(layout: Layout, store: registry.Store, policy: RetrainPolicy) -> Due:
    """What the policy says of the last build: the champion's age in labelled periods it never
    saw, and the monitor's verdict of the newest batch it served."""
    champion = registry.alias_version(store, registry.CHAMPION)
    if champion is None:
        return Due(False, ["the registry has no champion yet (`make promote` makes the first; "
                           "the scheduled job needs a shared MLflow store)"], None)  # fmt: skip
    tests_file = layout.product("monitor", "tests")
    if not tests_file.is_file():
        raise ConfigError(f"{tests_file} is missing: run `make build` first")
    batches = [b for b in storage.read_json(tests_file)["batches"] if not b["control"]]
    details = registry.version_details(store, champion)
    held = details["tags"].get(evidence.HOLDOUT_TAG) or details["run_tags"].get(
        evidence.HOLDOUT_TAG, ""
    )
    end = evidence.window_end(held)
    unseen = [b["batch"] for b in batches if b["batch"] > end and "roc_auc" in b]
    reasons, due = [], False
    if policy.every:
        due = len(unseen) >= policy.every
        reasons.append(f"the champion v{champion} (held out on {held}) has not seen "
                       f"{len(unseen)} labelled period(s); the policy retrains after "
                       f"{policy.every}")  # fmt: skip
    served = [b for b in batches if str(b.get("served_by", "")) == f"v{champion}"]
    if policy.trigger != "never" and served:
        newest = served[-1]
        hit = newest["status"] in ({"fail"} if policy.trigger == "fail" else {"fail", "warn"})
        due |= hit
        reasons.append(f"the newest batch it served, {newest['batch']}, is {newest['status']} "
                       f"(the policy retrains on {policy.trigger})")  # fmt: skip
    if not reasons:
        reasons.append("the policy never retrains (every: 0, trigger: never)")
    return Due(due, reasons, champion)


def retrain_args(env_file: str, policy: RetrainPolicy) -> list[str]:
    """The build that trains on the latest periods the policy names."""
    window = "null" if policy.window == "expanding" else str(policy.window)
    return [sys.executable, "-m", "nbmlops.build.run", "--env", env_file,
            "--env--data--split", "latest", "--env--data--train_periods", window,
            "--env--data--batch_periods", str(max(1, policy.shadow_periods))]  # fmt: skip


def retrain(env_file: str) -> int:
    layout = Layout.from_env(env_file)
    store = registry.Store.from_params(layout.env["mlflow"], env_file)
    policy = policy_of(layout)
    found = is_due(layout, store, policy)
    print(found, flush=True)
    if not found.due:
        return 0
    missing = [k for k in ("split", "train_periods", "batch_periods")
               if k not in (layout.env.get("data") or {})]  # fmt: skip
    if missing:
        raise ConfigError(f"{env_file}: the data block needs {', '.join(missing)} (e.g. split: "
                          "first, train_periods: null, batch_periods: 1) for the retrain build "
                          "to set them")  # fmt: skip
    print(f"building on the latest periods: {policy.describe()}", flush=True)
    return subprocess.run(retrain_args(env_file, policy), check=False).returncode


def propose(env_file: str, output: Path | None) -> int:
    """The challenger into the baseline file when the policy is due and it wins on the rows
    both models scored; the registry stays as it is."""
    layout = Layout.from_env(env_file)
    env = layout.env
    store = registry.Store.from_params(env["mlflow"], env_file)
    policy = policy_of(layout)
    found = is_due(layout, store, policy)
    print(found)
    if not found.due:
        return 0
    challenger = registry.alias_version(store, registry.CHALLENGER)
    shadow = cli.last_build_evidence(env_file, store, challenger) if challenger else None
    if shadow is None or shadow.gate is None:
        print(f"nothing to propose: {shadow.source if shadow else 'no challenger'}")
        return 0
    print(shadow)
    if len(shadow.batches) < policy.shadow_periods:
        print(f"nothing to propose: v{challenger} has shadowed {len(shadow.batches)} of the "
              f"policy's {policy.shadow_periods} period(s)")  # fmt: skip
        return 0
    held_out = cli.last_build_gate(env_file, challenger)
    if held_out is None:
        print(f"nothing to propose: the last build did not evaluate v{challenger}")
        return 0
    if not (held_out.passed and shadow.promotable):
        why = (
            "it fails the held-out gate"
            if not held_out.passed
            else ("the evidence shows it worse" if shadow.worse else "it does not improve enough")
        )
        print(f"nothing to propose: v{challenger} does not win: {why}")
        return 0
    with ProjectLock(Path(env["products"]) / LOCK_FILE, float(env.get("build_lock_wait") or 0),
                     what="proposal"):  # fmt: skip
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
    store = registry.Store.from_params(env["mlflow"], env_file)
    record = gates.load_baseline(env["baseline"])
    if record is None:
        print(f"{env['baseline']} names no champion yet")
        return 0
    version = str(record["version"])
    client = store.client()
    champion = registry.alias_version(store, registry.CHAMPION, client)
    if champion == version:
        print(f"the champion is v{version}, as {env['baseline']} records")
        return 0
    details = registry.version_details(store, version, client)
    recorded = record.get("manifest_sha256")
    actual = registry.manifest_sha256(details["tags"].get(registry.MANIFEST_TAG, ""))
    if not recorded or recorded != actual:
        raise registry.IntegrityError(
            f"{env['baseline']} names v{version} with files hashed {str(recorded)[:16]}…, "
            f"but the registry's v{version} has {str(actual)[:16]}…; refusing to serve it"
        )
    history = registry.champion_history(store, client)
    with ProjectLock(Path(env["products"]) / LOCK_FILE, float(env.get("build_lock_wait") or 0),
                     what="champion change"):  # fmt: skip
        registry.set_champion(store, version, history + [version], expected=history)
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
