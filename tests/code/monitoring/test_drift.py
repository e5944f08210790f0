import math
import re

import numpy as np
import pandas as pd
import pytest

from nbmlops.metrics.scores import PROBA, classification_metrics, scored_frame
from nbmlops.monitoring import drift
from nbmlops.spec import FeatureSpec

SPEC = FeatureSpec("y", ["x1", "x2"], ["c"])


def _scored(n, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(shift, 1, n),
            "x2": rng.normal(0, 1, n),
            "c": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    proba = 1 / (1 + np.exp(-(df["x1"] + rng.normal(0, 1, n))))
    return scored_frame(df, SPEC, proba.to_numpy())


@pytest.fixture(scope="module")
def reference():
    return _scored(3000, seed=1)


def test_batch_from_reference_shows_no_drift(tmp_path, reference):
    row = drift.batch_report(reference, _scored(2000, seed=2), SPEC, tmp_path / "r.html", 0.5)
    assert row["drift_share"] == 0 and not row["dataset_drift"] and not row["prediction_drift"]
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert row["tests_total"] > 0


def test_shifted_batch_shows_feature_and_prediction_drift(tmp_path, reference):
    row = drift.batch_report(reference, _scored(2000, 1.0, seed=3), SPEC, tmp_path / "r.html", 0.3)
    assert row["drifted_features"] == ["x1"]
    assert row["drift_share"] == pytest.approx(1 / 3)
    assert row["dataset_drift"] and row["prediction_drift"]
    assert row["prediction_drift_score"] > 0.1


def test_unlabelled_batch_gets_drift_only(tmp_path, reference):
    batch = _scored(500, seed=4).assign(y=np.nan)
    row = drift.batch_report(reference, batch, SPEC, tmp_path / "r.html", 0.5)
    assert not drift.has_labels(batch, SPEC)
    assert "drift_share" in row


def test_a_labelled_batch_of_one_class_gets_drift_and_no_performance(tmp_path, reference):
    batch = _scored(300, seed=5).assign(y=0)  # every label 0: a rare class that did not occur
    row = drift.batch_report(reference, batch, SPEC, tmp_path / "r.html", 0.5)
    assert drift.has_labels(batch, SPEC) and not drift.both_classes(batch, SPEC)
    assert row["drift_share"] == 0 and (tmp_path / "r.html").is_file()
    assert math.isnan(classification_metrics(batch["y"], batch[PROBA])["roc_auc"])


def _scripts(page: str) -> list[str]:
    from html.parser import HTMLParser

    class Scripts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found, self.inside = [], False

        def handle_starttag(self, tag, attrs):
            if tag == "script":
                self.inside = True
                self.found.append("")

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "script"

        def handle_data(self, data):
            if self.inside:
                self.found[-1] += data

    parser = Scripts()
    parser.feed(page)
    return parser.found


def test_hostile_category_cannot_close_the_reports_script_block(tmp_path, reference):
    hostile = "</script><script>window.__pwned=1</script>"
    current = _scored(500, seed=3)
    current.loc[:99, "c"] = hostile
    drift.batch_report(reference, current, SPEC, tmp_path / "r.html", 0.5)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert hostile not in page and "window.__pwned" in page  # present, as data
    scripts = _scripts(page)  # as a browser splits them: a script ends at the first </script
    assert not any(s.lstrip().startswith("window.__pwned") for s in scripts)
    (data_script,) = [s for s in scripts if "var metric_" in s]
    assert "var additional_graphs_" in data_script  # the data block was not cut short
    import json

    from nbmlops import html

    template = re.search(f"<script>var {html.TEMPLATE_VARIABLE} = (.*?);</script>", page)[1]
    block = page[page.index("var metric_") :].replace(html.TEMPLATE_VARIABLE, template)
    data, _ = json.JSONDecoder().raw_decode(block[block.index("{") :])
    assert hostile in json.dumps(data, ensure_ascii=False)  # the data itself is unchanged


def test_batch_pages_share_evidentlys_scripts_link_back_and_stay_small(tmp_path, reference):
    pages = tmp_path / "batches"
    for k in (1, 2):
        drift.batch_report(reference, _scored(2000, seed=10 + k), SPEC,
                                pages / f"batch-{k}.html", 0.5, summary="../index.html")  # fmt: skip
    shared = list((pages / "assets").iterdir())
    assert sorted(p.suffix for p in shared) == [".css", ".js"]  # written once for both pages
    assert sum(p.stat().st_size for p in shared) > 2_000_000  # evidently's scripts and fonts
    for k in (1, 2):
        page = (pages / f"batch-{k}.html").read_text(encoding="utf-8")
        assert len(page.encode()) < 1_000_000
        for asset in shared:
            assert f'"assets/{asset.name}"' in page
        assert 'href="../index.html">&larr; monitoring summary</a>' in page
        assert "var additional_graphs_" in page
        metric = page[page.index("var metric_") : page.index("var additional_graphs_")]
        assert "additionalGraphs" not in metric  # its copy of the graphs, never read


def test_a_compacted_page_holds_the_same_plots():
    """What the page's script reads is kept, every number to 6 significant digits; the copy of
    the detail plots it never reads is dropped."""
    import json

    from evidently import Report
    from evidently.presets import DataDriftPreset

    from nbmlops import html

    ref, cur = _scored(1500, seed=20), _scored(1500, 0.3, seed=21)
    snapshot = Report([DataDriftPreset(columns=SPEC.columns)]).run(
        current_data=drift._dataset(cur, SPEC, False),
        reference_data=drift._dataset(ref, SPEC, False),
    )
    raw = snapshot.get_html_str(as_iframe=False)
    small = html.compact_report_data(raw)
    data = [len(html._DATA_BLOCK.search(page)[0]) for page in (raw, small)]
    assert data[1] < 0.8 * data[0], data

    def variables(page):
        block = html._DATA_BLOCK.search(page)
        text = block[0][len("<script>") : -len(block[3])]
        shared = re.search(f"<script>var {html.TEMPLATE_VARIABLE} = (.*?);</script>", page)
        if shared:  # the layouts' one template, put back where each refers to it
            text = text.replace(html.TEMPLATE_VARIABLE, shared[1])
        names, values = html._VARIABLES.findall(text), html._VARIABLES.split(text)[2::2]
        return dict(zip(names, map(json.loads, values), strict=True))

    before, after = variables(raw), variables(small)
    assert before.keys() == after.keys()
    templates = json.dumps(after).count('"template"')  # a copy in every plot it reads ...
    assert templates > 3 and small.count('"template":{') == 0  # ... now one, referred to
    assert small.count(f'"template":{html.TEMPLATE_VARIABLE}') == templates
    graphs = next(k for k in before if k.startswith("additional_graphs_"))

    def numbers(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from numbers(v)
        elif isinstance(value, list):
            for v in value:
                yield from numbers(v)

    old, new = list(numbers(before[graphs])), list(numbers(after[graphs]))
    assert len(old) == len(new) > 100
    assert np.allclose(new, old, rtol=1e-5, atol=0, equal_nan=True)
    assert "additionalGraphs" in json.dumps(next(v for k, v in before.items() if k != graphs))
    assert "additionalGraphs" not in json.dumps(next(v for k, v in after.items() if k != graphs))


def test_unknown_report_layout_is_refused():
    from nbmlops import html

    with pytest.raises(ValueError, match="unknown layout"):
        html.neutralize_script_data("<script>var metric_1 = {};</script>")
    assert html.neutralize_script_data("<p>plain</p>") == "<p>plain</p>"


@pytest.mark.parametrize("shift", [0.0, 0.5], ids=["same", "shifted"])
def test_drift_on_a_sample_decides_as_on_the_full_batch(tmp_path, reference, shift):
    full = _scored(60_000, shift=shift, seed=7)
    sample = drift.sample_rows(full, 10_000, seed=1)
    assert len(sample) == 10_000 and drift.sample_rows(full, 0) is full
    on_full = drift.batch_report(reference, full, SPEC, tmp_path / "full.html", 0.5)
    on_sample = drift.batch_report(reference, sample, SPEC, tmp_path / "sample.html", 0.5)
    assert on_sample["drifted_features"] == on_full["drifted_features"]
    assert on_sample["prediction_drift"] == on_full["prediction_drift"]
    for column, score in on_full["drift_scores"].items():
        assert on_sample["drift_scores"][column] == pytest.approx(score, abs=0.02), column
    assert ("x1" in on_full["drifted_features"]) == (shift > 0)


@pytest.mark.parametrize("rows", [400, 3000])  # p-value tests (with a code column), distances
def test_drift_without_a_page_is_the_drift_of_the_page(tmp_path, rows):
    """The backtest's way (no page, no plots drawn) finds what the report finds: every
    column's score and decision, the prediction drift and the tests' counts."""
    spec = FeatureSpec("y", ["x1", "x2", "grade"], ["c"])

    def frame(n, shift, seed):
        rng = np.random.default_rng(seed)
        data = pd.DataFrame({"x1": rng.normal(shift, 1, n), "x2": rng.normal(0, 1, n),
                             "grade": rng.integers(1, 6 + int(shift * 2), n),
                             "c": rng.choice(["a", "b", "c"][: 2 + int(shift)], n),
                             "y": np.nan})  # fmt: skip
        return scored_frame(data, spec, 1 / (1 + np.exp(-data["x1"].to_numpy())))

    reference = frame(rows, 0.0, 1)
    for shift, seed in ((0.0, 2), (0.3, 3), (1.0, 4)):
        batch = frame(rows // 2, shift, seed)
        paged = drift.batch_report(reference, batch, spec, tmp_path / "r.html", 0.3)
        assert drift.batch_report(reference, batch, spec, None, 0.3) == paged
    assert paged["drifted_features"] and paged["prediction_drift"]  # the last batch drifts
