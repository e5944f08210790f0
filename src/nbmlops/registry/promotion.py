"""Promotion and rollback: move `champion` and rewrite the committed baseline with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..storage import write_json
from . import gates, versions
from .errors import RegistryError
from .evidence import Evidence, ExperimentEvidence
from .loading import manifest_sha256
from .runs import MANIFEST_TAG
from .store import Store


@dataclass(frozen=True)
class Decision:
    """Whether a version may become champion, and why (or why not) in a few words."""

    allowed: bool
    why: str


def decide(held_out: gates.GateResult, evidence: list[Evidence | ExperimentEvidence],
           needs_evidence: bool = False) -> Decision:  # fmt: skip
    """The promotion rule, for `make promote`, `make propose` and the backtest.

    With evidence judged on rows both models scored (or, in an online experiment, on the
    records each answered, once its test stopped), the version must pass the held-out gate,
    be worse on none of those rows and pass and improve on some; without, it must pass and
    improve on the held-out gate. Evidence of too few rows to judge counts as none;
    `needs_evidence` (a scheduled promotion) refuses a version without any.
    """
    judged = [e for e in evidence if e.judged]
    if not judged:
        if needs_evidence:
            return Decision(False, "no evidence judged on the rows both models scored")
        if held_out.promotable:
            return Decision(True, "it passes every gate and improves the selection metric")
        return Decision(False, "it must pass every gate and improve the selection metric by "
                               "the gate's min_improvement")  # fmt: skip
    if not held_out.passed:
        return Decision(False, "it fails the held-out gate")
    if any(e.worse for e in judged):
        return Decision(False, "the evidence shows it worse than the champion (or its "
                               "online experiment stopped for the champion, or the service "
                               "rolled it back)")  # fmt: skip
    if not any(e.promotable for e in judged):
        return Decision(False, "it must pass the gates and improve the selection metric by the "
                               "gate's min_improvement on the rows both models scored, or win "
                               "its online experiment")  # fmt: skip
    return Decision(True, "it passes the held-out gate and wins on the rows both models scored")


def baseline_for(store: Store, version: str) -> dict:
    """The baseline file's content for a version: its identity and held-out metrics."""
    details = versions.version_details(store, version)
    return {
        "model": store.model_name,
        "version": details["version"],
        "candidate": details["tags"].get("candidate", ""),
        "run_id": details["run_id"],
        "sha256": details["tags"].get("sha256", ""),
        # every file of the version, pinned where the store's writers cannot change it unseen
        "manifest_sha256": manifest_sha256(details["tags"].get(MANIFEST_TAG, "")),
        "git_commit": details["tags"].get("git_commit", ""),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": {k: round(v, 6) for k, v in sorted(details["metrics"].items())},
    }


def promote(
    store: Store,
    baseline_file: str | Path,
    gate_spec: dict,
    version: str | None = None,
    force: bool = False,
    evidence: Evidence | list[Evidence] | None = None,
    held_out: gates.GateResult | None = None,
) -> tuple[str, gates.GateResult]:
    """Make `version` (default: the challenger) champion if the evidence allows it.

    The held-out gate is `held_out` (the build's own: the champion scored on the same held-out
    rows), or else the version's held-out metrics against the committed baseline's; with
    `evidence` (the two models on the same rows), `decide` says whether it may be promoted.
    `force` promotes anyway; the message says why either way.
    The registry moves first; the baseline file is rewritten only after the alias moved.
    """
    client = store.client()
    version = str(version or versions.alias_version(store, versions.CHALLENGER, client) or "")
    if not version:
        raise RegistryError(f"model {store.model_name!r} has no challenger; run `make build` first")
    current = versions.alias_version(store, versions.CHAMPION, client)
    history = versions.champion_history(store, client)  # written only if still this
    if current == version:
        raise RegistryError(f"v{version} is already the champion")
    result = held_out
    if result is None:
        metrics = versions.version_metrics(store, version, client)
        baseline = gates.load_baseline(baseline_file)
        result = gates.check(metrics, baseline, gate_spec)
    found = [evidence] if isinstance(evidence, Evidence) else list(evidence or [])
    decision = decide(result, found)
    if not decision.allowed and not force:
        raise gates.GateError(
            f"v{version} is not promoted: {decision.why} (use --force to override).\n"
            f"held-out gate:\n{result}" + "".join(f"\n{e}" for e in found)
        )
    content = baseline_for(store, version)
    versions.set_champion(store, version, history + [version], expected=history)
    write_json(baseline_file, content)
    return version, result


def rollback(store: Store, baseline_file: str | Path) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from, to)."""
    history = versions.champion_history(store)
    if len(history) < 2:
        raise RegistryError(f"model {store.model_name!r} has no previous champion to roll back to")
    previous, current = history[-2], history[-1]
    content = baseline_for(store, previous)
    versions.set_champion(store, previous, history[:-1], expected=history)
    write_json(baseline_file, content)
    return current, previous
