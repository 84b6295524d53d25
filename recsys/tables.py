"""Reading the shop's CSV and Parquet files into frames, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys.errors import InputFileError, SchemaError

_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
_CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".gz"}
_INT_TEXT = r"^-?(0|[1-9][0-9]{0,17})(\.0*)?$"


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Return 'csv' or 'parquet' for a file, from the configured format or its name and bytes."""
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    return "csv"


def check_readable(path: Path, what: str) -> None:
    """Raise InputFileError unless path is an existing, non-empty file."""
    if not path.exists():
        raise InputFileError(f"{path}: {what} file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: {what} path is not a file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: {what} file is empty (0 bytes)")


def read_columns(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    what: str,
    fmt: str = "auto",
    encoding: str = "utf-8",
    text_columns: Sequence[str] = (),
    config_key: str = "",
    all_columns: bool = False,
) -> pd.DataFrame:
    """Read the named columns (or all, with all_columns) of a CSV or Parquet file.

    `text_columns` are read as text from CSV. Missing required columns raise SchemaError
    naming the columns the file does have.
    """
    check_readable(path, what)
    kind = detect_format(path, fmt)
    names = _column_names(path, kind, encoding, what)
    missing = [c for c in required if c not in names]
    if missing:
        hint = f"; set {config_key} to the file's column names" if config_key else ""
        raise SchemaError(
            f"{path.name}: missing required column {missing[0]!r} (columns found: {names}){hint}"
        )
    present = names if all_columns else [c for c in optional if c in names]
    wanted = list(dict.fromkeys([*required, *present]))
    if kind == "parquet":
        table = _read_parquet(path, wanted, what)
    else:
        table = _read_csv(path, wanted, encoding, set(text_columns), what)
    # The file's own column types decide, not pandas metadata stored beside them: metadata
    # left over from an older frame can turn missing ids into the text "nan".
    return table.to_pandas(ignore_metadata=True)


def _column_names(path: Path, kind: str, encoding: str, what: str) -> list[str]:
    if kind == "parquet":
        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(
                f"{path}: {what} file is not a readable Parquet file ({exc})"
            ) from None
        _check_header(path, names, what)
        return names
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(encoding=encoding))
        names = list(reader.schema.names)
        reader.close()
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, LookupError) as exc:
        raise _csv_error(path, what, encoding, exc) from None
    if not names:
        raise InputFileError(f"{path}: {what} file has no header row")
    _check_header(path, names, what)
    return names


def file_label(path: Path, seen: dict[str, int]) -> str:
    """How a report names an input file: its name, or its whole path when another input of
    the same name (in another folder) is already listed, so that neither's rows are hidden."""
    return path.name if path.name not in seen else str(path)


def _check_header(path: Path, names: list[str], what: str) -> None:
    """Refuse a header that would be misread: a repeated column name, or one column that is
    the whole header of a file separated by something other than commas."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SchemaError(
                f"{path.name}: column {name!r} appears twice in the header of the {what} file; "
                "rename one of them"
            )
        seen.add(name)
    if len(names) == 1:
        for separator, word in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if separator in names[0]:
                raise SchemaError(
                    f"{path.name}: the {what} file's header is one column {names[0]!r}; it looks "
                    f"separated by {word}, but only comma-separated CSV is read: convert it "
                    "(e.g. to Parquet) or re-export it with commas"
                )


def _read_parquet(path: Path, columns: list[str], what: str) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(
            f"{path}: {what} file is not a readable Parquet file ({exc})"
        ) from None


def _read_csv(path: Path, columns: list[str], encoding: str, text: set[str], what: str) -> pa.Table:
    read = pacsv.ReadOptions(encoding=encoding, block_size=16 << 20)
    # Ids and free text stay text so that '007' keeps its zeros; other columns are typed by
    # pyarrow, and a file whose later rows break the inferred type is re-read all as text so
    # that validation, not the reader, decides what happens to the bad rows.
    types = {c: pa.string() for c in columns if c in text}
    for attempt_types in (types, {c: pa.string() for c in columns}):
        convert = pacsv.ConvertOptions(
            include_columns=columns,
            column_types=attempt_types,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            # Only an empty field is missing: "NA" or "null" may be a real id or value, and
            # a value that is not a number is then rejected by validation, not lost here.
            null_values=[""],
        )
        try:
            return pacsv.read_csv(path, read_options=read, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "conversion error" in str(exc).lower() and attempt_types is types:
                continue
            raise _csv_error(path, what, encoding, exc) from None
        except (OSError, UnicodeDecodeError, LookupError) as exc:
            raise _csv_error(path, what, encoding, exc) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _csv_error(path: Path, what: str, encoding: str, exc: Exception) -> InputFileError:
    text = str(exc)
    if isinstance(exc, LookupError):
        return InputFileError(f"{path}: unknown text encoding {encoding!r}")
    if "utf8" in text.lower().replace("-", "") or isinstance(exc, UnicodeDecodeError):
        return InputFileError(
            f"{path}: {what} file is not valid {encoding} text; "
            "set the source's encoding (e.g. encoding = 'latin-1') or re-save the file as UTF-8"
        )
    if "gzip" in text.lower():
        return InputFileError(f"{path}: {what} file is not valid gzip ({text})")
    if "columns, got" in text:
        ragged = _first_ragged_row(path, encoding)
        if ragged is not None:
            row, found, expected = ragged
            return InputFileError(
                f"{path}: row {row:,} of the {what} file has {found} fields where the header has "
                f"{expected}; fix that row (a stray comma or an unquoted one) and rerun"
            )
    return InputFileError(f"{path}: {what} file is not a readable CSV file ({text})")


def _first_ragged_row(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """(1-based data row, its fields, the header's fields) of the first row whose field count
    differs from the header's; only read when the fast reader has already failed."""
    import csv
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=encoding, newline="") as fh:
            rows = csv.reader(fh)
            header = next(rows, [])
            for number, row in enumerate(rows, start=1):
                if row and len(row) != len(header):
                    return number, len(row), len(header)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def typed_ids(values: pd.Series, kind: str = "auto") -> tuple[pd.Series, np.ndarray]:
    """Return (ids of the asked type, mask of present ids that do not fit it).

    "auto" is normalize_ids (nothing misfits); "text" keeps every id as text; "int" reads
    whole numbers (17850, 17850.0) as Int64 and marks the rest (N/A, 85123A) as misfits.
    """
    values, undecodable = _decoded(values)
    if kind == "text":
        text = _as_text(values)
        # 17850.0 (a spreadsheet's whole number) is the id "17850", as under "auto"; "007" and
        # "85123A" stay as written.
        whole = _whole(text)
        if whole.any():
            text[whole] = _without_point_zero(text[whole])
        return text, undecodable
    if kind == "int":
        text = _as_text(values)
        present = text.notna().to_numpy()
        fits = _whole(text)
        ids = pd.Series(pd.NA, index=values.index, dtype="Int64")
        if fits.any():
            numbers = pd.to_numeric(_without_point_zero(text[fits]), errors="coerce")
            ok = numbers.notna() & (numbers.abs() < 2**63)
            ids[numbers.index[ok.to_numpy()]] = numbers[ok].astype("Int64")
            fits[np.flatnonzero(fits)[~ok.to_numpy()]] = False
        return ids, (present & ~fits) | undecodable
    return normalize_ids(values), undecodable


def _whole(text: pd.Series) -> np.ndarray:
    """Which ids are written as whole numbers (17850, 17850.0; not 007 or 85123A)."""
    arr = pa.array(text.fillna(""), type=pa.string())
    matched: np.ndarray = pc.match_substring_regex(arr, _INT_TEXT).to_numpy(zero_copy_only=False)
    return matched & text.notna().to_numpy()


def _without_point_zero(text: pd.Series) -> pd.Series:
    return text.str.replace(r"\.0*$", "", regex=True)


def _decoded(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Binary ids as text (UTF-8); ids that are not valid UTF-8 become missing and are marked."""
    bad = np.zeros(len(values), dtype=bool)
    if values.dtype != object:
        return values, bad
    present = values.dropna()
    if not len(present) or not any(isinstance(v, bytes | bytearray) for v in present[:1000]):
        return values, bad
    decoded = values.copy()
    for position, value in enumerate(values.tolist()):
        if isinstance(value, bytes | bytearray):
            try:
                decoded.iat[position] = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                decoded.iat[position] = None
                bad[position] = True
    return decoded, bad


def check_id_column(values: pd.Series, column: str, file: str) -> None:
    """Refuse a column whose values cannot be ids at all: true/false, lists, tables."""
    if pd.api.types.is_bool_dtype(values.dtype):
        raise SchemaError(
            f"{file}: column {column!r} holds true/false values, not ids; name the id column"
        )
    if values.dtype == object:
        sample = values.dropna()[:1000]
        if any(isinstance(v, list | tuple | np.ndarray) for v in sample):
            raise SchemaError(
                f"{file}: column {column!r} holds lists, not ids; name the id column (or "
                "flatten the lists first)"
            )
        if any(isinstance(v, dict) for v in sample):
            raise SchemaError(
                f"{file}: column {column!r} holds tables, not ids; name the id column"
            )


def normalize_ids(values: pd.Series) -> pd.Series:
    """Return ids as nullable Int64 when every id is a whole number written plainly, else as text.

    Float ids (17850.0, as spreadsheets and some exports store them) become integers; text ids
    with leading zeros or letters stay text, so no two distinct ids are ever merged.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("str")
    if pd.api.types.is_integer_dtype(values.dtype):
        if _fits_int64(values):
            return values.astype("Int64")
        return _as_text(values.astype("str").where(values.notna()))
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        whole = len(finite) == 0 or bool(np.all(np.mod(finite.to_numpy(), 1) == 0))
        if whole and _fits_int64(finite):
            return values.astype("Int64")
        return _as_text(values.astype("str").where(values.notna()))
    text = _as_text(values)
    present = text.notna().to_numpy()
    if present.any() and _whole(text)[present].all():
        return _without_point_zero(text).astype("Int64")
    return text


def _fits_int64(values: pd.Series) -> bool:
    # Unsigned 64-bit ids and huge floats do not fit: they stay text rather than crash.
    finite = values.dropna()
    return len(finite) == 0 or (float(finite.max()) < 2**63 and float(finite.min()) >= -(2**63))


def _as_text(values: pd.Series) -> pd.Series:
    text = values.astype("str").where(values.notna()).str.strip()
    return text.where(text != "")


def to_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 values, NaN where empty or bad; mask of present values not numbers)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype("float64").to_numpy(na_value=np.nan)
        return out, np.zeros(len(values), dtype=bool)
    text = _as_text(values)
    out = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    bad = np.isnan(out) & text.notna().to_numpy()
    return out, bad
