"""result.json: one versioned structure, written and read through kdbench.results.schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.results.schema import (
    RESULT_FIELDS,
    RESULT_SCHEMA_VERSION,
    ResultUnreadable,
    make_result,
    read_result,
    result_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]


def a_record() -> dict:
    values = {"integer": 3, "number": 1.5, "string": "x", "object": {}, "array": [], "boolean": False, "null": None}
    return {**{f.name: values[f.types[0]] for f in RESULT_FIELDS if f.name != "schema_version"}, "status": "done"}


def test_a_written_record_reads_back(tmp_path: Path) -> None:
    record = make_result(a_record())
    assert record["schema_version"] == RESULT_SCHEMA_VERSION
    (tmp_path / "result.json").write_text(json.dumps(record))
    assert read_result(tmp_path / "result.json") == record


def test_a_record_without_a_version_is_version_one(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(json.dumps(a_record()))
    assert read_result(tmp_path / "result.json")["run_id"] == "x"


def test_writing_refuses_a_record_that_does_not_fit() -> None:
    record = a_record()
    del record["top1_last"]
    record["epochs"] = "many"
    with pytest.raises(TypeError, match="missing 'top1_last'.*'epochs' is str"):
        make_result(record)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"run_id": "abc", "top1_l',
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'{"schema_version": 99}',
        b'{"status": "done"}',
        json.dumps({**a_record(), "status": "failed"}).encode(),
    ],
)
def test_damaged_records_are_unreadable_not_a_crash(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "result.json").write_bytes(content)
    with pytest.raises(ResultUnreadable, match="result.json"):
        read_result(tmp_path / "result.json")


def test_no_record_is_none(tmp_path: Path) -> None:
    assert read_result(tmp_path / "result.json") is None


def test_the_documented_json_schema_is_the_code_s() -> None:
    documented = json.loads((ROOT / "docs" / "result.schema.json").read_text())
    assert documented == result_json_schema()
