"""The backtest of retraining policies, on weekly data whose relation to the label changes
half-way: what each policy decides, that no decision reads a row from after its cut-off, and
that training in worker processes changes nothing."""

import numpy as np
import pandas as pd
import pytest

from nbmlops.settings import CalibrationSettings, RetrainPolicy
from nbmlops.spec import BATCH, CONTROL, PERIOD, FeatureSpec
from nbmlops.training import replay
from nbmlops.training.trainer import Periods, Trainer

SPEC = FeatureSpec("churned", ["usage", "tenure"], ["plan"])
WEEKS = [f"2024-W{w:02d}" for w in range(1, 11)]
GATES = {
    "selection_metric": "roc_auc",
    "metrics": {
        "roc_auc": {"floor": 0.5, "max_regression": 0.02, "min_improvement": 0.002},
        "pr_auc": {"min_lift": 1.0, "max_regression": 0.05},
        "brier": {"ceiling": 0.25, "max_regression": 0.05},
    },
}
POLICIES = {
    "never": RetrainPolicy(),
    "weekly": RetrainPolicy(every=1),
    "weekly-rolling-2": RetrainPolicy(window=2, every=1, shadow_periods=0),
    "on-fail": RetrainPolicy(trigger="fail"),
}


def weeks(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Churn by week: until week 5 low usage says who leaves; from week 6 (a competitor
    courts long-standing customers) tenure does, and the churn rate climbs."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, week in enumerate(WEEKS):
        usage, tenure = rng.normal(size=rows), rng.normal(size=rows)
        plan = rng.choice(["basic", "plus", "pro"], size=rows)
        usage_effect, tenure_effect = (-1.5, 0.3) if i < 5 else (-0.3, 1.5)
        logit = (
            usage_effect * usage + tenure_effect * tenure + 0.3 * (plan == "basic") - 1 + 0.1 * i
        )
        churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int8")
        frames.append(pd.DataFrame({"usage": usage, "tenure": tenure, "plan": plan,
                                    "churned": churned, PERIOD: week}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def replayed(data: pd.DataFrame, workers: int = 1, policies=POLICIES,
           label_delay: int = 0) -> replay.Result:  # fmt: skip
    train, holdout = data[data[PERIOD] < "2024-W03"], data[data[PERIOD] == "2024-W03"]
    batches = data[data[PERIOD] > "2024-W03"].assign(**{BATCH: lambda d: d[PERIOD], CONTROL: ""})
    periods, _ = Periods.from_windows(train, holdout, batches, SPEC)
    logreg = {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
              "params": {"class_weight": "balanced"}}  # fmt: skip
    # the policies' logic, each model fitted on its whole window: a calibration slice holds
    # back the newest rows, which slows the adaptation to a change these tests time
    whole = CalibrationSettings(method="none", threshold=0.5)
    trainer = Trainer(periods, SPEC, [logreg], 0, 1, "roc_auc", workers, whole)
    try:
        bt = replay.Backtest(periods, SPEC, trainer, GATES, reference_periods=3)
        return replay.run(bt, policies, progress=lambda _: None, label_delay=label_delay)
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def result():
    return replayed(weeks())


def test_each_policy_retrains_and_promotes_as_it_says(result):
    served = {name: pd.DataFrame(r.periods) for name, r in result.replays.items()}
    assert list(served["never"]["period"]) == WEEKS[3:]
    assert not served["never"]["retrained"].any() and not served["never"]["promoted"].any()
    assert served["never"]["served_by"].nunique() == 1
    # every period from the second on retrains (the first is served by the fresh model)
    assert served["weekly"]["retrained"].tolist() == [False] + [True] * 6
    # no model serves a period it saw: its training periods end, and its held-out period
    # follows, before the period it serves; a challenger shadows a period before it may serve
    for name, lag in (("weekly", 1), ("weekly-rolling-2", 0)):
        rows = served[name]
        last = rows["trained_on"].str.split(" … ").str[-1].map(WEEKS.index)
        assert (rows["period"].map(WEEKS.index) - last >= 2).all()
        promoted = rows["promoted"]
        assert promoted.sum() >= 1, name
        assert (rows["period"].map(WEEKS.index) - last)[promoted].eq(lag + 2).all(), name
    # rolling: two training periods, then one held out
    spans = served["weekly-rolling-2"]["trained_on"].str.split(" … ")
    assert spans.map(lambda s: WEEKS.index(s[-1]) - WEEKS.index(s[0])).eq(1).all()


def test_retraining_wins_after_the_change_and_the_monitor_triggers_it(result):
    served = {name: pd.DataFrame(r.periods).set_index("period") for name, r in
              result.replays.items()}  # fmt: skip
    never = served["never"]
    assert never.loc["2024-W06":, "status"].eq("fail").all()  # the monitor sees the change
    assert never.loc["2024-W06":, "roc_auc"].max() < 0.7 < never.loc["2024-W04", "roc_auc"]
    # two periods of the new world are enough for a rolling window; an expanding one needs
    # more, as its old rows outweigh the new
    late = slice("2024-W08", None)
    assert (
        served["weekly-rolling-2"].loc[late, "roc_auc"].mean()
        > never.loc[late, "roc_auc"].mean() + 0.1
    )
    for name in ("weekly", "on-fail"):
        assert served[name].loc["2024-W10", "roc_auc"] > never.loc["2024-W10", "roc_auc"] + 0.05
    # on-fail retrains only after a failing period, the first time after the first failure
    trained = [d for d in result.replays["on-fail"].decisions if d["train"]]
    assert trained[0]["cutoff"] == "2024-W07"
    assert all(d["status_seen"] == "fail" and d["triggered"] for d in trained)
    summary = result.summary().set_index("policy")
    assert summary.loc["never", "retrains"] == 0 == summary.loc["never", "training_seconds"]
    assert summary.loc["weekly", "retrains"] == 6 and summary.loc["weekly", "training_seconds"] > 0
    assert summary.loc["weekly-rolling-2", "roc_auc"] > summary.loc["never", "roc_auc"]
    # each period's performance was also estimated before its labels, and checked against them
    assert summary["roc_auc_estimate_inside"].between(0, 1).all()
    assert (summary["roc_auc_estimate_mae"] < 0.2).all()


def test_no_decision_reads_a_row_from_after_its_cutoff(result):
    """Poison every row from week 7 on (labels flipped, features scrambled): every decision
    at the cut-offs up to week 7 and every period served before it stay the same."""
    data = weeks()
    poisoned = data.copy()
    after = poisoned[PERIOD] >= "2024-W07"
    rng = np.random.default_rng(1)
    poisoned.loc[after, "churned"] = 1 - poisoned.loc[after, "churned"]
    poisoned.loc[after, "usage"] = rng.permutation(poisoned.loc[after, "usage"].to_numpy()) * 9
    poisoned.loc[after, "plan"] = "unheard-of"
    again = replayed(poisoned)
    cut = WEEKS.index("2024-W07") - 3  # decisions at cut-offs W04 … W07
    changed_later = False
    for name, r in result.replays.items():
        other = again.replays[name]
        assert other.decisions[: cut + 1] == r.decisions[: cut + 1], name
        assert other.periods[:cut] == r.periods[:cut], name
        changed_later |= other.decisions[cut + 1 :] != r.decisions[cut + 1 :]
        assert other.periods[cut]["roc_auc"] != r.periods[cut]["roc_auc"]  # the poison is seen
    assert changed_later


LATE = 2  # weeks until a week's labels are known


@pytest.fixture(scope="module")
def late(result):
    return replayed(weeks(), label_delay=LATE)


def test_late_labels_change_nothing_for_the_policies_that_have_them_at_once(result, late):
    for name, r in result.replays.items():
        assert late.replays[name].decisions == r.decisions, name
        assert late.replays[name].periods == r.periods, name


def test_with_late_labels_a_model_trains_and_is_judged_on_labelled_periods_only(late):
    for name in POLICIES:
        r = late.replays[replay.replay_label(name, LATE)]
        for d in r.decisions:
            cutoff = WEEKS.index(d["cutoff"])
            assert d["labelled_before"] == WEEKS[cutoff - LATE]
            if d["train"]:
                assert d["train"][1] <= cutoff - LATE, (name, d)
            if "shadow_gate" in d:  # judged on periods it shadowed whose labels are in
                last = d["shadow_gate"]["on"].split(" … ")[-1]
                assert WEEKS.index(last) < cutoff - LATE, (name, d)
    cost = late.delay_cost().set_index("policy")
    assert sorted(cost.index) == sorted(POLICIES) and cost["label_delay"].eq(LATE).all()
    assert cost.loc["never", ["roc_auc_change", "retrains_change"]].eq(0).all()
    # late labels cost the policies that adapt to the change: they see it later
    assert cost.loc["weekly-rolling-2", "roc_auc_change"] < 0
    # on-fail: the drift is seen before the labels; the failing performance two weeks later
    at_once = [d for d in late.replays["on-fail"].decisions if d["train"]]
    delayed = [d for d in late.replays[replay.replay_label("on-fail", LATE)].decisions
               if d["train"]]  # fmt: skip
    assert WEEKS.index(delayed[0]["cutoff"]) >= WEEKS.index(at_once[0]["cutoff"])


def test_with_late_labels_no_decision_reads_a_label_it_would_not_have(late):
    """Flip every label from week 7 on: with labels two weeks late, every decision up to
    the cut-off of week 9 stays the same (the features of weeks 7 and 8 may be read)."""
    data = weeks()
    after = data[PERIOD] >= "2024-W07"
    data.loc[after, "churned"] = 1 - data.loc[after, "churned"]
    again = replayed(data, label_delay=LATE)
    cut = WEEKS.index("2024-W09") - 3
    changed_later = False
    for name in POLICIES:
        label = replay.replay_label(name, LATE)
        mine, other = late.replays[label].decisions, again.replays[label].decisions
        assert other[: cut + 1] == mine[: cut + 1], name
        changed_later |= other[cut + 1 :] != mine[cut + 1 :]
    assert changed_later


def test_worker_processes_train_the_same_models(result):
    """Candidates trained in two processes give the very decisions and figures of one."""
    parallel = replayed(weeks(), workers=2, policies={"weekly": POLICIES["weekly"]})
    assert parallel.replays["weekly"].decisions == result.replays["weekly"].decisions
    assert parallel.replays["weekly"].periods == result.replays["weekly"].periods
    assert parallel.seconds["workers"] == 2
    # the windows the clock was guessed to need, trained early, were all needed
    assert parallel.seconds["guessed_windows_unused"] == 0
