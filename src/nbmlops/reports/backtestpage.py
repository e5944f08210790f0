"""The backtest's page: each policy's served model over the periods, side by side."""

from __future__ import annotations

import pandas as pd

from .. import html
from ..training.replay import Result

#: Per period, what the table shows (the JSON file has everything).
SHOWN = ["period", "served_by", "model", "rows", "positive_rate", "roc_auc", "pr_auc", "brier",
         "mean_proba", "calibration_gap", "status", "before_labels", "events"]  # fmt: skip


def plot_policies(periods: pd.DataFrame, late: dict[str, str] | None = None):
    """ROC AUC (with the 95 % interval of the first policy), Brier and the calibration gap of
    the model each policy served, by period; a triangle marks a promotion. A replay with late
    labels (`late`: its name to its policy's) is dashed, in its policy's colour."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    late = late or {}
    policies = list(dict.fromkeys(periods["policy"]))
    colour = {name: f"C{k}" for k, name in enumerate(n for n in policies if n not in late)}
    for k, name in enumerate(policies):
        rows = periods[periods["policy"] == name]
        x = list(rows["period"])
        c, style = colour.get(late.get(name, name), f"C{k}"), "o--" if name in late else "o-"
        for ax, column in zip(axes, ("roc_auc", "brier", "calibration_gap"), strict=True):
            ax.plot(x, rows[column], style, ms=3, lw=1.4, color=c, label=name)
            promoted = rows[rows["promoted"]]
            ax.plot(list(promoted["period"]), promoted[column], "^", ms=9, color=c)
        if k == 0:
            axes[0].fill_between(x, rows["roc_auc_low"], rows["roc_auc_high"], color="C0",
                                 alpha=0.12, label=f"{name}: 95 % interval")  # fmt: skip
    axes[2].axhline(0, color="grey", lw=1)
    titles = ("ROC AUC of the served model", "Brier score (lower is better)",
              "Calibration gap: observed rate − mean predicted")  # fmt: skip
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # below the plots: they stay clear
    rows = -(-len(labels) // 4)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * rows, 1, 1))
    plt.close(fig)
    return fig


def backtest_page(result: Result, home: str = "../index.html") -> str:
    """The page: what was replayed, the policies' totals, the plots and every period."""
    summary, periods, s = result.summary(), result.periods_frame(), result.settings
    seconds = result.seconds
    body = [
        html.cards(
            {
                "periods replayed": len(s["periods"]) - s["reference_periods"],
                "policies": len({r.name for r in result.replays.values()}),
                "rows": s["rows"],
                "candidates": ", ".join(s["candidates"]),
                "model fits": seconds["fits"],
                "wall time (s)": round(seconds["total"], 1),
            }
        ),  # fmt: skip
        html.para(
            f"The periods {s['periods'][0]} to {s['periods'][-1]} replayed as if they were "
            f"lived: at each cut-off only the rows of earlier periods exist. Every policy starts "
            f"from the pipeline's model (trained on the first "
            f"{s['reference_periods'] - s['held_out_periods']} periods, chosen on the next "
            f"{s['held_out_periods']}). A retrained challenger is the best candidate on the "
            f"{s['held_out_periods']} periods before its cut-off by {s['selection_metric']}; it "
            "must pass the gate file's rules against the champion on those periods, then (unless "
            "the policy promotes at once) score the next periods in shadow and pass the gates "
            "there too, on the very same rows as the champion. Each served period gets the "
            "monitor's verdict, which a trigger policy retrains on."
        ),
        html.heading("Policies"),
        html.table(summary),
        html.para(
            "roc_auc, pr_auc and brier are means over the periods of the model each policy "
            "served; abs_calibration_gap is the mean distance between the observed rate and the "
            "mean predicted probability; training_seconds add up every candidate's fit (a window "
            "two policies share is trained once)."
        ),
        html.figure(
            plot_policies(
                periods, {label: r.name for label, r in result.replays.items() if r.delay}
            )
        ),
    ]
    cost = result.delay_cost()
    if len(cost):
        delay = s["label_delay"]
        body += [
            html.heading(f"What labels {delay} period{'s' if delay != 1 else ''} late cost"),
            html.para(
                f"Every policy replayed again with each period's labels known {delay} "
                f"period{'s' if delay != 1 else ''} after it was served: a model trains on the "
                "periods labelled by its cut-off, a shadow is judged once the periods it "
                "shadowed are labelled, and a trigger reads the monitor's verdict before labels "
                "(drift, unseen values, the performance estimated from the probabilities) until "
                "the labels come. Each change is late minus at once (ROC AUC lower and Brier "
                "higher is worse)."
            ),
            html.table(cost),
        ]
    for name, replay in result.replays.items():
        rows = pd.DataFrame(replay.periods)
        rows["events"] = ["; ".join(e) for e in rows["events"]]
        body += [
            html.heading(f"{name}: {result.policies[name].describe()}"),
            html.table(rows[SHOWN], {"pass": "pass", "fail": "fail", "warn": "warn"}),
        ]
    if result.skipped:
        body.append(html.para(f"Left out for want of labels: {', '.join(result.skipped)}."))
    return html.page("Backtest of retraining policies", "".join(body), home=home)
