"""The one reader of JSON record files: every refusal is one line naming the file."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from respike_nm.records import read_record


class BadFile(ValueError):
    pass


@dataclass(frozen=True)
class Row:
    format_version: int
    name: str
    sizes: tuple[int, ...]


@pytest.mark.parametrize("text, words", [
    (None, "no such file"),
    ("{", "not JSON (Expecting property name"),
    ("[1]", "format_version: this reader knows 2, the file says None"),
    (json.dumps({"format_version": 1, "name": "a", "sizes": []}), "this reader knows 2, the file says 1"),
    (json.dumps({"format_version": 2, "name": 3, "sizes": []}), "name: expected str, got 3"),
    (json.dumps({"format_version": 2, "name": "a"}), "missing field(s) sizes"),
    (json.dumps({"format_version": 2, "name": "a", "sizes": [], "x": 1}), "unknown field(s) x"),
])
def test_a_bad_record_file_is_one_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "row.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BadFile) as e:
        read_record(path, Row, BadFile, format_version=2)
    message = str(e.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message


def test_a_good_record_file_reads_back_typed(tmp_path):
    path = tmp_path / "row.json"
    path.write_text(json.dumps({"format_version": 2, "name": "a", "sizes": [1, 2]}))
    assert read_record(path, Row, BadFile, format_version=2) == Row(2, "a", (1, 2))
