"""Input files: find them, fingerprint them, and refuse the ones in the wrong format.

These checks read only a file's first bytes or lines on the driver; rows are read by
Spark. A file that is not what the adapter expects stops the job with one clear
sentence naming the file and what was expected.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from shoprec.errors import InputFormatError

FORMATS = ("csv", "jsonl", "parquet", "xlsx")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class SourceFile:
    """One input file as the ingest job sees it."""

    path: str  # absolute path as given (what lineage shows)
    format: str  # csv | jsonl | parquet | xlsx
    sha256: str
    size: int
    read_path: str | None = None  # what Spark reads when it differs (xlsx converted to CSV)
    # Written by shoprec itself, one message a line (``shoprec stream``'s Kafka batches): no
    # file-level format check refuses it, since every line stands alone and one that is not an
    # event is a quarantine row; its sha256 covers its name (the offsets it holds) and content.
    framed: bool = False

    @property
    def spark_path(self) -> str:
        return self.read_path or self.path


def expand_inputs(inputs: list[str] | tuple[str, ...]) -> list[str]:
    """Files named by ``inputs`` (files, folders, globs), sorted, de-duplicated."""
    found: list[str] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if any(ch in item for ch in "*?[") else [item]
        if not matches:
            raise InputFormatError(f"no input file matches {item}", hint="check the path or glob in ingest.inputs")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                found.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith((".", "_")))
            elif p.is_file():
                found.append(str(p))
            else:
                raise InputFormatError(f"input file {m} does not exist", hint="check the path in ingest.inputs")
    return [str(Path(f).resolve()) for f in dict.fromkeys(found)]  # first occurrence of each, in order


def detect_format(path: str, declared: str = "auto") -> str:
    """The adapter format of ``path``: the declared one, else from its extension."""
    if declared != "auto":
        return declared
    name = path.lower()
    for suffix in (".gz", ".gzip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    raise InputFormatError(
        f"cannot tell the format of {path} from its name",
        hint="name it .csv, .csv.gz, .jsonl, .parquet or .xlsx, or set ingest.format",
    )


def fingerprint(path: str, framed: bool = False) -> tuple[str, int]:
    """sha256 and size of a file (the identity used to skip re-ingesting it).

    A gzip file is also decompressed to its end (``check_gzip``), so a truncated or corrupt
    one stops the job here, before anything is written, instead of failing inside Spark.
    A ``framed`` file (``SourceFile.framed``) is never gzip, whatever its first message's
    bytes; its name goes into the hash before its content: two Kafka batches whose messages
    are byte for byte the same (a producer resending) are two batches, not one ingested twice.
    """
    digest = hashlib.sha256()
    if framed:
        digest.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if not framed and _head_bytes(path, 2) == _GZIP_MAGIC:
        check_gzip(path)
    return digest.hexdigest(), os.path.getsize(path)


def check_gzip(path: str) -> None:
    """Decompress a gzip file to its end (in chunks, nothing kept); a clear error when it is cut or damaged."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputFormatError(
            f"{path}: gzip data is truncated or corrupt ({exc.__class__.__name__}: {exc})",
            hint="the file was probably cut off while copying or downloading; fetch it again",
        ) from exc


def _head_bytes(path: str, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def open_text(path: str) -> io.TextIOWrapper:
    """Open a possibly gzip-compressed text file, refusing binary content clearly."""
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8", errors="strict", newline="")


def open_bytes(path: str) -> gzip.GzipFile | io.BufferedReader:
    """Open a possibly gzip-compressed text file as bytes, refusing binary content clearly."""
    head = _head_bytes(path)
    if path.lower().endswith((".gz", ".gzip")) and not head.startswith(_GZIP_MAGIC):
        raise InputFormatError(f"{path} is named .gz but is not gzip-compressed", hint="decompress or rename it")
    if head.startswith(_GZIP_MAGIC) and not path.lower().endswith((".gz", ".gzip")):
        raise InputFormatError(
            f"{path} is gzip-compressed but not named .gz", hint="rename it to end in .gz so Spark decompresses it"
        )
    if head.startswith((_ZIP_MAGIC, _PARQUET_MAGIC)):
        raise InputFormatError(
            f"{path} is a binary file (zip/xlsx or Parquet), expected text", hint="set ingest.format"
        )
    # The stream is the caller's to close (it is returned), so no with block here.
    return gzip.open(path, "rb") if head.startswith(_GZIP_MAGIC) else open(path, "rb")


def read_csv_header(path: str) -> list[str]:
    """The first line of a CSV file, parsed; a clear error when it is not text CSV."""
    try:
        # Only the first line is decoded: invalid UTF-8 further on is a quarantine row, not an error.
        with open_bytes(path) as fh:
            first = fh.readline()
        line = (first.decode("utf-8").splitlines() or [""])[0]
    except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFormatError(f"{path} is not a UTF-8 text CSV file ({exc.__class__.__name__})") from exc
    if not line.strip():
        raise InputFormatError(f"{path} is empty or starts with a blank line, expected a CSV header row")
    return [h.strip().lstrip("\ufeff") for h in next(csv.reader([line]))]


def check_jsonl(path: str) -> None:
    """The first non-blank line must be a JSON object."""
    try:
        with open_bytes(path) as fh:
            for raw in fh:  # decoded line by line: invalid UTF-8 later on is a quarantine row
                line = raw.decode("utf-8")
                if line.strip():
                    if not isinstance(json.loads(line), dict):
                        raise ValueError("not an object")
                    return
    except (ValueError, UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFormatError(
            f"{path} is not JSON lines (one JSON object per line): {exc}", hint="check the file or set ingest.format"
        ) from exc
    raise InputFormatError(f"{path} holds no JSON lines at all")


def check_parquet(path: str) -> list[str]:
    """Column names of a Parquet file; a clear error when it is not Parquet."""
    import pyarrow.parquet as pq

    if _head_bytes(path, 4) != _PARQUET_MAGIC:
        raise InputFormatError(f"{path} is not a Parquet file", hint="check the file or set ingest.format")
    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputFormatError(f"{path} is a damaged Parquet file: {exc}") from exc


def xlsx_to_csv(path: str, dest_dir: str, sha256: str) -> str:
    """Convert the first sheet of an .xlsx to gzip CSV, streaming, for Spark to read.

    Row i of the sheet becomes line i of the CSV, so quarantine line numbers point at the
    spreadsheet's own row numbers.
    """
    from datetime import datetime

    import openpyxl

    os.makedirs(dest_dir, exist_ok=True)
    out = os.path.join(dest_dir, f"{sha256[:16]}.csv.gz")
    if os.path.exists(out):
        return out
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise InputFormatError(f"{path} is not a readable .xlsx workbook: {exc}") from exc
    tmp = out + ".tmp"
    with gzip.open(tmp, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for row in book.worksheets[0].iter_rows(values_only=True):
            writer.writerow(
                ["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v for v in row]
            )
    book.close()
    os.replace(tmp, out)
    return out
