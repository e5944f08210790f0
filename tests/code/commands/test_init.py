"""`nbmlops init` on data that is not flights: what it proposes, what it writes, what it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from nbmlops.commands import init
from nbmlops.data import contract as dc
from nbmlops.data.split import PROPOSAL_POSITIVES
from nbmlops.envfile import load_env
from nbmlops.errors import ConfigError, DataError
from nbmlops.settings import DataSettings
from nbmlops.tools import scaleup
from tests.conftest import copy_project
from tests.helpers import breast_cancer_frame, credit_frame, sensor_frame


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project, and the current folder (a relative `--source` starts there)."""
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    return project


def _written(project, name) -> set[str]:
    return {str(p.relative_to(project)) for p in init.paths(project, name).values() if p.exists()}


def test_daily_dates_and_string_labels(project, capsys):
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    code = init.main(["init", "patients", "--source", str(project / "patients.csv"),
                      "--target", "diagnosis", "--positive", "malignant", "--time", "visit_date",
                      "--project", str(project)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert _written(project, "patients") == {
        "env.patients.yaml", "contracts/patients.yaml", "model/gates.patients.yaml"}  # fmt: skip
    env = load_env(project / "env.patients.yaml")
    s = DataSettings.from_params(env["data"])
    assert (s.period, s.reference_periods, s.holdout_periods) == ("M", 3, 1)
    assert env["products"] == str(project / "products" / "patients")
    assert env["mlflow"]["model_name"] == "patients"
    assert env["serving"]["archive"] == str(project / "data" / "requests" / "patients")
    contract = dc.load_contract(env["contract"])["tables"]["data"]["columns"]
    assert contract["clinic"] == {"type": "category", "allowed": ["east", "north", "south"],
                                  "unknown": "warn", "max_missing": 0.01}  # fmt: skip
    radius = breast_cancer_frame()["mean_radius"]
    assert (
        contract["mean_radius"]["min"]
        < radius.min()
        < radius.max()
        < contract["mean_radius"]["max"]
    )
    assert contract["visit_date"]["type"] == "datetime"
    gates = yaml.safe_load((project / "model" / "gates.patients.yaml").read_text())
    assert gates["metrics"]["pr_auc"]["min_lift"] == 1.0  # no worse than guessing the rate
    assert "2024-03" in out and "3 to monitor" in out and "next: make build ENV=patients" in out


def test_no_time_column_rare_class_ids_constants_and_missing_words(project, capsys):
    credit_frame().to_csv(project / "loans.csv", sep=";", index=False, encoding="utf-8-sig")
    proposal = init.init_project(project, "loans", str(project / "loans.csv"), "default")
    s = proposal.settings
    assert s.time_column is None and s.row_periods >= 3
    assert s.drop_columns == ("customer_id",)
    assert "n/a" in s.missing_values
    assert proposal.admitted.spec.dropped_columns["country"].startswith("constant")
    assert proposal.admitted.spec.numeric == ["income", "debt_ratio"]
    holdout = proposal.admitted.split.holdout
    assert holdout["default"].sum() >= PROPOSAL_POSITIVES
    text = init.summary(proposal, project)
    assert "no time column: split by row order" in text and "'n/a'" in text
    assert "positive label 'Y', the larger of ['N', 'Y']" in text
    columns = yaml.safe_load((project / "contracts" / "loans.yaml").read_text())
    ids = columns["tables"]["data"]["columns"]["customer_id"]
    assert "min" not in ids and "max" not in ids  # new customers bring new numbers


def test_an_id_column_out_of_order_is_known_by_its_name(project):
    """A file sorted by date holds customer numbers out of order: named like an identifier and
    different on every row, the column is no feature; a whole-number feature is kept."""
    df = breast_cancer_frame()
    rng = np.random.default_rng(7)
    df.insert(0, "customer_id", rng.permutation(len(df)) + 100_000)
    df["visits"] = rng.permutation(len(df))  # whole numbers, every one different: a feature
    df.to_csv(project / "patients.csv", index=False)
    proposal = init.init_project(project, "p", "patients.csv", "diagnosis", time="visit_date")
    assert "customer_id" in proposal.settings.drop_columns
    assert "named like one: a row identifier" in proposal.notes["customer_id"]
    assert "visits" in proposal.admitted.spec.numeric


def test_time_zone_offsets_and_boolean_labels(project):
    sensor_frame().to_parquet(project / "sensors.parquet")
    proposal = init.init_project(project, "sensors", "sensors.parquet", "high", time="taken_at")
    train = proposal.admitted.split.train
    assert train["_time"].min() == pd.Timestamp("2024-02-01 08:00")  # 00:00 at -08:00, in UTC
    assert proposal.settings.period in ("W", "D")
    assert len(proposal.admitted.split.batches["_batch"].unique()) >= 3
    assert load_env(project / "env.sensors.yaml")["data"]["positive_label"] is None


def test_a_date_column_without_time_is_not_a_feature(project):
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    proposal = init.init_project(project, "p", "patients.csv", "diagnosis")
    assert "visit_date" in proposal.settings.drop_columns
    assert "pass --time visit_date" in proposal.notes["visit_date"]


def test_a_column_with_no_value_is_named_and_left_out(project):
    df = breast_cancer_frame().assign(referral=np.nan, ward="")
    df.to_csv(project / "patients.csv", index=False)
    proposal = init.init_project(project, "p", "patients.csv", "diagnosis", time="visit_date")
    assert proposal.notes["referral"] == "no value on any row: not a feature"
    assert proposal.notes["ward"] == "no value on any row: not a feature"
    spec = proposal.admitted.spec
    assert not {"referral", "ward"} & set(spec.numeric + spec.categorical)


def _hourly_rentals(days: int = 730, seed: int = 3) -> pd.DataFrame:
    """Two years of hourly bike rentals as a bike-share table has them: calendar columns
    beside the weather and the hour, and a counter of weeks."""
    rng = np.random.default_rng(seed)
    stamp = pd.date_range("2011-01-01", periods=24 * days, freq="h")
    season = np.sin(2 * np.pi * (stamp.dayofyear - 100) / 365)
    temp = 15 + 12 * season + 4 * np.sin(2 * np.pi * (stamp.hour - 9) / 24) + rng.normal(0, 3, len(stamp))  # fmt: skip
    busy = 1 / (1 + np.exp(-(0.15 * (temp - 15) + np.where(np.isin(stamp.hour, [8, 17, 18]), 2, -0.5))))  # fmt: skip
    return pd.DataFrame({
        "dteday": stamp.strftime("%Y-%m-%d %H:00"), "day": stamp.dayofyear, "mnth": stamp.month,
        "month_name": stamp.strftime("%b"), "yr": stamp.year - 2011, "week": (stamp.dayofyear - 1) // 7 + 52 * (stamp.year - 2011),
        "hr": stamp.hour, "weekday": stamp.dayofweek, "temp": temp.round(1),
        "day_mean_temp": pd.Series(temp, index=stamp).groupby(stamp.date).transform("mean").round(1).to_numpy(),
        "busy": np.where(rng.random(len(stamp)) < busy, "yes", "no"),
    })  # fmt: skip


def test_columns_that_stand_for_the_time_are_named_and_left_out(project):
    """Hourly data split by month: each batch's day of year, month (a number or a name) and
    week count lie beyond the held-out month's, which the monitor compares it with; the
    hour, the weekday, the year (training saw both) and a seasonal temperature are features."""
    _hourly_rentals().to_csv(project / "rentals.csv", index=False)
    proposal = init.init_project(project, "bikes", "rentals.csv", "busy", positive="yes",
                                 time="dteday")  # fmt: skip
    disguised = {"day", "mnth", "month_name", "week"}
    assert disguised <= set(proposal.settings.drop_columns)
    for column in disguised:
        assert "follows the time" in proposal.notes[column], (column, proposal.notes[column])
        assert "not a feature, it would drift by construction" in proposal.notes[column]
    assert "the same value all day, every day" in proposal.notes["mnth"]
    spec = proposal.admitted.spec
    assert {"hr", "weekday", "temp", "yr", "day_mean_temp"} <= set(spec.numeric)  # a daily summary
    assert not disguised & set(spec.numeric + spec.categorical)
    text = init.summary(proposal, project)
    assert "dropped 'mnth': follows the time" in text


def test_a_counter_without_a_time_column_is_left_out_and_a_trend_free_number_kept(project):
    df = credit_frame()
    df["batch_no"] = np.arange(len(df)) // 50  # rises with the rows, 50 rows each
    df.to_csv(project / "loans.csv", index=False)
    proposal = init.init_project(project, "loans", "loans.csv", "default")
    assert "rank correlation +1.00 with the time order" in proposal.notes["batch_no"]
    assert "batch_no" in proposal.settings.drop_columns
    assert {"income", "debt_ratio"} <= set(proposal.admitted.spec.numeric)


def test_what_init_refuses_leaves_nothing_behind(project, tmp_path):
    breast_cancer_frame().head(120).to_csv(project / "small.csv", index=False)
    with pytest.raises(DataError, match=r"small.csv, column 'diagnosis': no split of its 120 rows"):
        init.init_project(project, "small", "small.csv", "diagnosis")
    assert _written(project, "small") == set()
    breast_cancer_frame().to_csv(tmp_path / "outside.csv", index=False)
    with pytest.raises(DataError, match="is outside the project folder"):
        init.init_project(project, "out", str(tmp_path / "outside.csv"), "diagnosis")
    with pytest.raises(ConfigError, match="project name 'My Data'"):
        init.init_project(project, "My Data", "small.csv", "diagnosis")
    breast_cancer_frame().to_csv(project / "patients.csv", index=False)
    with pytest.raises(DataError, match="column 'churn': target column is missing"):
        init.init_project(project, "p", "patients.csv", "churn")
    init.init_project(project, "p", "patients.csv", "diagnosis")
    with pytest.raises(ConfigError, match="env.p.yaml.* already exist"):
        init.init_project(project, "p", "patients.csv", "diagnosis")


def test_a_refusal_is_one_line_and_exit_2(project, capsys):
    code = init.main(["init", "x", "--source", "nowhere.csv", "--target", "y",
                      "--project", str(project)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nbmlops init: ") and "Traceback" not in err


def test_the_benchmarks_user_table_is_a_project(project):
    """The table `make bench` times init on: daily dates, 'yes'/'no', an ID and `n/a`."""
    scaleup.user_table(20_000).to_csv(project / "customers.csv", index=False)
    proposal = init.init_project(project, "customers", "customers.csv", "churned",
                                 positive="yes", time="signup_date")  # fmt: skip
    s = proposal.settings
    assert s.drop_columns == ("customer_id",) and "n/a" in s.missing_values
    assert len(proposal.admitted.split.batches["_batch"].unique()) >= 3


def _monthly(rows: int = 300, positives: int | None = None):
    """Five years of months as "2019-01" text, a 0/1 label the numbers predict."""
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.normal(size=rows)
    y = (x + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    if positives is not None:
        y[:] = 0
        y[rng.choice(rows, positives, replace=False)] = 1
    months = pd.period_range("2019-01", periods=60, freq="M").astype(str)
    return pd.DataFrame({"month": np.sort(rng.choice(months, rows)), "x": x,
                         "z": rng.normal(size=rows), "y": y})  # fmt: skip


def test_a_long_reference_of_months_is_a_split_the_build_accepts(project):
    """Two years of days: the proposal holds more than `row_periods` months for reference,
    which the build once refused although `row_periods` is only for data without times."""
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.normal(size=2000)
    days = pd.date_range("2021-01-01", "2022-12-31", freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"day": np.sort(rng.choice(days, 2000)), "x": x, "z": rng.normal(size=2000),
                  "y": (x + rng.normal(scale=0.7, size=2000) > 0).astype(int)}).to_csv(
        project / "daily.csv", index=False)  # fmt: skip
    proposal = init.init_project(project, "daily", "daily.csv", "y", time="day")
    env = load_env(project / "env.daily.yaml")
    s = DataSettings.from_params(env["data"], "env.daily.yaml")  # as the build reads it
    assert s == proposal.settings and s.reference_periods > s.row_periods


def test_too_few_positives_or_days_are_refused_with_what_would_work(project):
    _monthly(250, positives=2).to_csv(project / "rare.csv", index=False)
    with pytest.raises(DataError, match=r"its 2 positives cannot give 5 to train on and 3 held"):
        init.init_project(project, "rare", "rare.csv", "y", time="month")
    _monthly(250).assign(month="2022-06-01").to_csv(project / "oneday.csv", index=False)
    with pytest.raises(DataError, match=r"fall on 1 day\(s\).* leave out the time column"):
        init.init_project(project, "oneday", "oneday.csv", "y", time="month")
    assert _written(project, "rare") == _written(project, "oneday") == set()


def _bad_inputs(project, good: pd.DataFrame) -> dict[str, tuple[list[str], str]]:
    """Bad inputs derived from a good table: the arguments after the project's name, and
    what the one line must say (the file, the column where there is one, the problem)."""

    def csv(name, frame):
        frame.to_csv(project / name, index=False)
        return ["--source", name, "--target", "diagnosis"]

    def raw(name, content: bytes):
        (project / name).write_bytes(content)
        return ["--source", name, "--target", "diagnosis"]

    def cells(column, value, rows=5):
        frame = good.astype({column: object})
        frame.loc[frame.index[:rows], column] = value
        return frame

    header, body = good.to_csv(index=False).split("\n", 1)
    good.to_csv(project / "good.csv", index=False)
    good.to_csv(project.parent / "outside.csv", index=False)
    return {
        "missing-file": (["--source", "nowhere.csv", "--target", "y"], "nowhere.csv: file not found"),
        "empty-file": (raw("empty.csv", b""), "empty.csv: file is empty"),
        "header-only": (raw("header.csv", b"a,b,diagnosis\n"), "header.csv: has a header but no rows"),
        "spreadsheet": (raw("data.xlsx", b"PK\x03\x04"), "data.xlsx: is neither CSV nor Parquet"),
        "corrupt-parquet": (raw("data.parquet", b"PAR1 no"), "data.parquet: cannot be read as parquet"),
        "duplicate-columns": (raw("dup.csv", (header.replace("mean_texture", "mean_area") + "\n" + body).encode()),
                              "dup.csv, column 'mean_area': column name appears more than once"),
        "target-missing": (["--source", "good.csv", "--target", "churn"],
                           "good.csv, column 'churn': target column is missing"),
        "target-one-class": (csv("one.csv", good.assign(diagnosis="benign")),
                             "one.csv, column 'diagnosis': target has one class only ('benign')"),
        "target-empty": (csv("unlabelled.csv", good.assign(diagnosis=np.nan)),
                         "unlabelled.csv, column 'diagnosis': every value is missing"),
        "target-partly-empty": (csv("late.csv", cells("diagnosis", np.nan, 40)),
                                "late.csv, column 'diagnosis': 40 of 569 rows have no target value"),
        "positive-label-absent": (["--source", "good.csv", "--target", "diagnosis", "--positive", "Malignant"],
                                  "good.csv, column 'diagnosis': positive_label 'Malignant' does not occur"),
        "time-column-missing": (["--source", "good.csv", "--target", "diagnosis", "--time", "when"],
                                "good.csv, column 'when': time column is missing"),
        "time-unparsable": (csv("dates.csv", cells("visit_date", "last week", 3)) + ["--time", "visit_date"],
                            "dates.csv, column 'visit_date': 3 values are not dates, e.g. 'last week'"),
        "infinite-values": (csv("inf.csv", cells("mean_area", np.inf)),
                            "inf.csv, column 'mean_area': 5 infinite values"),
        "text-in-numbers": (csv("text.csv", cells("mean_texture", "n/a?", 1)),
                            "text.csv, column 'mean_texture': numeric column holds text in 1 rows"),
        "too-few-rows": (csv("small.csv", good.head(60)), "small.csv, column 'diagnosis': no split of its 60 rows"),
        "nothing-but-the-target": (csv("only.csv", good[["diagnosis"]]), "only.csv: no feature columns left"),
        "outside-the-project": (["--source", "../outside.csv", "--target", "diagnosis"],
                                "../outside.csv: is outside the project folder"),
        "project-name": (["--source", "good.csv", "--target", "diagnosis", "--name-check"], "project name 'My Data'"),
    }  # fmt: skip


def test_every_bad_input_gets_one_line_naming_it_and_leaves_nothing(project, capsys):
    """Nineteen kinds of bad input derived from a good table: each refused with exit 2 and
    one line that names the file, the column and the problem, no traceback, nothing written.
    (An all-empty column is left out with its reason, and a `;`-separated or Latin-1 file is
    read as written: other tests here.)"""
    good = breast_cancer_frame()
    cases = _bad_inputs(project, good)
    assert len(cases) == 19
    for case, (args, expected) in cases.items():
        name = "My Data" if "--name-check" in args else "bad"
        args = [a for a in args if a != "--name-check"]
        code = init.main(["init", name, *args, "--project", str(project)])
        err = capsys.readouterr().err
        assert code == 2, (case, err)
        assert err.startswith("nbmlops init: ") and err.count("\n") == 1, (case, err)
        assert expected in err, (case, err)
        assert "Traceback" not in err and _written(project, "bad") == set(), case


def test_a_semicolon_or_latin1_file_is_read_as_written(project):
    good = breast_cancer_frame()
    (project / "semi.csv").write_text(good.to_csv(index=False, sep=";"), encoding="utf-8")
    note = good.assign(note=np.where(good.index % 2, "café", "thé"))
    (project / "latin.csv").write_bytes(note.to_csv(index=False).encode("latin-1"))
    semi = init.init_project(project, "semi", "semi.csv", "diagnosis")
    latin = init.init_project(project, "latin", "latin.csv", "diagnosis")
    assert set(semi.admitted.spec.numeric) >= {"mean_area", "mean_texture"}
    assert "note" in latin.admitted.spec.categorical
    contract = (project / "contracts" / "latin.yaml").read_text(encoding="utf-8")
    assert "café" in contract and "thé" in contract  # decoded, not replaced
