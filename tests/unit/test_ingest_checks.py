"""Pure-Python ingest checks: gzip integrity and the id rules' validation at config load."""

from __future__ import annotations

import gzip

import pytest

from shoprec.config import IngestConfig
from shoprec.errors import ConfigError, InputFormatError
from shoprec.ingest.files import check_gzip, fingerprint, read_csv_header
from tests.conftest import make_config


def _gz(tmp_path, data: bytes, name: str = "x.csv.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_whole_gzip_passes_and_cut_or_damaged_gzip_is_one_clear_error(tmp_path):
    full = gzip.compress(b"".join(b"line %d with some text\n" % i for i in range(20000)))
    ok = _gz(tmp_path, full, "ok.csv.gz")
    check_gzip(ok)
    assert fingerprint(ok)[1] == len(full)

    cut = _gz(tmp_path, full[: len(full) // 2], "cut.csv.gz")
    with pytest.raises(InputFormatError, match=r"cut\.csv\.gz: gzip data is truncated or corrupt \(EOFError") as exc:
        fingerprint(cut)
    assert "\n" not in str(exc.value) and "fetch it again" in str(exc.value)

    damaged = bytearray(full)
    damaged[len(full) // 2 : len(full) // 2 + 64] = b"\x00" * 64
    bad = _gz(tmp_path, bytes(damaged), "bad.csv.gz")
    with pytest.raises(InputFormatError, match=r"bad\.csv\.gz: gzip data is truncated or corrupt"):
        check_gzip(bad)


def test_csv_header_is_read_even_when_later_lines_are_not_utf8(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,\xff\xfe\n")
    assert read_csv_header(str(path)) == ["a", "b"]
    path.write_bytes(b"\xffa,b\n")
    with pytest.raises(InputFormatError, match="is not a UTF-8 text CSV file"):
        read_csv_header(str(path))


def test_id_patterns_have_defaults_and_must_compile(tmp_path):
    defaults = IngestConfig().id_patterns
    assert set(defaults) == {"customer_id", "user_id", "item_id", "session_id"}
    cfg = make_config(tmp_path, "ingest.id_patterns.customer_id=^C[0-9]+$")
    assert cfg.ingest.id_patterns["customer_id"] == "^C[0-9]+$"
    assert cfg.ingest.id_patterns["user_id"] == defaults["user_id"]  # mappings merge key by key
    with pytest.raises(ConfigError, match=r"'ingest\.id_patterns\.user_id' must be a regular expression that compiles"):
        make_config(tmp_path, "ingest.id_patterns.user_id=([a-z")
