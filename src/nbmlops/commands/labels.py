"""`make label-queue` and `make label-send`: records drawn for labelling, as a CSV a person
fills in, and the filled-in outcomes sent to the service's `POST /feedback`.

    python -m nbmlops.commands.labels queue --env env.yaml
    python -m nbmlops.commands.labels send data/requests/label-queue.csv --url http://127.0.0.1:8000

`queue` draws `serving.label_sample` of the answered records, stratified by served model and
score decile (`monitoring.labelqueue`), and writes `label-queue.csv` beside the archive: the
records still without an outcome, their inputs, and an empty `outcome` column. `send` posts
every row whose `outcome` is filled in (0 or 1) and says what became of each; a row with any
other outcome stops it before anything is sent, naming the row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ConfigError, DataError, PipelineError, Problem
from ..layout import Layout
from ..monitoring.labelqueue import draw
from ..records import KEY, OUTCOME
from ..settings import ServingSettings

#: Labels posted per request to /feedback.
CHUNK = 500


def queue(env_file: str) -> int:
    layout = Layout.from_env(env_file)
    serving = ServingSettings.from_params(layout.env.get("serving"), env_file)
    if serving.label_sample <= 0:
        raise ConfigError(f"{env_file}: serving.label_sample is 0: set the share of answered "
                          "records to queue for labelling (e.g. 0.02)")  # fmt: skip
    folder = layout.env_file.resolve().parent / serving.archive
    found = draw(folder, serving.label_sample)
    per_model = found.strata.groupby(["served_version", "served_arm"])[
        ["answered", "queued", "labelled"]].sum()  # fmt: skip
    print(per_model.to_string() if len(per_model) else "no answered record yet")
    print(f"{found.added:,} record(s) queued now, {found.queued:,} in all; {found.waiting:,} "
          f"wait for an outcome in {found.csv} (fill in `{OUTCOME}` with 0 or 1, then "
          "make label-send)")  # fmt: skip
    return 0


def filled(path: Path) -> list[dict]:
    """The rows of a filled-in queue whose outcome is given, as /feedback items; DataError
    naming the first rows whose outcome is neither empty, 0 nor 1."""
    import pandas as pd

    # text as written (ids keep their leading zeros); a spreadsheet's UTF-8 mark is skipped
    rows = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in [*KEY, OUTCOME] if c not in rows]
    if missing:
        raise DataError(Problem(str(path), None, f"no column(s) {missing}; send the file "
                                "`make label-queue` wrote"))  # fmt: skip
    given = rows[rows[OUTCOME].str.strip() != ""]
    place = pd.to_numeric(given["record"].str.strip(), errors="coerce")
    torn = given[place.isna() | (place < 0) | (place % 1 != 0)]
    if len(torn):
        shown = ", ".join(f"row {i + 2}: {v!r}" for i, v in torn["record"].head(5).items())
        raise DataError(Problem(str(path), "record", f"must be the record's place, a whole "
                                f"number; {len(torn)} row(s) are not ({shown}); nothing was "
                                "sent"))  # fmt: skip
    value = pd.to_numeric(given[OUTCOME].str.strip(), errors="coerce")
    bad = given[~value.isin([0, 1])]
    if len(bad):
        shown = ", ".join(f"row {i + 2}: {v!r}" for i, v in bad[OUTCOME].head(5).items())
        raise DataError(Problem(str(path), OUTCOME, f"takes 0 or 1 (or nothing, for a record "
                                f"not labelled yet); {len(bad)} row(s) hold something else "
                                f"({shown}); nothing was sent"))  # fmt: skip
    return [
        {"request_id": r, "record": int(i), OUTCOME: int(o)}
        for r, i, o in zip(given["request_id"], place, value, strict=True)
    ]


def send(path: Path, url: str, token_env: str) -> int:
    items = filled(path)
    if not items:
        print(f"{path}: no row has an outcome yet; nothing to send")
        return 0
    headers = {"content-type": "application/json"}
    if os.environ.get(token_env):
        headers["authorization"] = f"Bearer {os.environ[token_env]}"
    counts: dict[str, int] = {}
    problems = []
    for start in range(0, len(items), CHUNK):
        body = json.dumps({"labels": items[start : start + CHUNK]}).encode()
        request = urllib.request.Request(url.rstrip("/") + "/feedback", body, headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                found = json.loads(answer.read())
            if not isinstance(found, dict) or not {"counts", "results"} <= set(found):
                raise ValueError(f"not the service's answer: {str(found)[:80]!r}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            sent = sum(counts.values())
            why = getattr(exc, "reason", None) or exc
            raise PipelineError(f"{url}/feedback: {why}; {sent:,} of {len(items):,} label(s) "
                                "were answered before it; send the file again (those come "
                                "back as duplicates)") from None  # fmt: skip
        for status, n in found["counts"].items():
            counts[status] = counts.get(status, 0) + n
        problems += [r for r in found["results"]
                     if r["status"] not in ("accepted", "duplicate")]  # fmt: skip
    print(", ".join(f"{status} {n:,}" for status, n in sorted(counts.items())))
    for r in problems[:10]:
        print(f"  {r.get('request_id')} record {r.get('record')}: {r['status']}: "
              f"{r.get('detail', '')}")  # fmt: skip
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("queue", help="draw records for labelling; write the CSV")
    q.add_argument("--env", default="env.yaml")
    s = commands.add_parser("send", help="post a filled-in CSV's outcomes to /feedback")
    s.add_argument("file", type=Path)
    s.add_argument("--url", default="http://127.0.0.1:8000", help="the scoring service")
    s.add_argument("--token-env", default=ServingSettings.token_env,
                   help="the variable holding the service's token, when it has one")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.command == "queue":
            return queue(args.env)
        return send(args.file, args.url, args.token_env)
    except PipelineError as exc:
        print(f"labels: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
