"""Typed records and their JSON: one checker for every reader in the project.

Manifests, verification and energy reports, mapping reports and configs are frozen dataclasses;
files hold them as JSON (YAML for configs). :func:`to_data` turns a record into JSON-ready data;
:func:`from_data` builds it back, strictly: every field's JSON type is checked against its
annotation (lists stand for tuples, ``int`` excludes ``bool``, nested records and tuples of records
are read recursively), and an unknown or a missing key is an error naming the field. Callers pass
their own exception class, so that an error says which kind of file was wrong.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import yaml


def to_data(record) -> dict:
    """JSON-ready dict of a dataclass record (tuples become lists when dumped)."""
    return dataclasses.asdict(record)


def conforms(value, hint) -> bool:
    """Whether a JSON value fits a field annotation (JSON lists stand for tuples and lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin in (tuple, list):
        if not isinstance(value, list):
            return False
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1])
                                               for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def describe(hint) -> str:
    """``int``, ``int | None``, ``tuple[int, int]``: the annotation as written; a tuple of records is
    ``a list of <Record> objects``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and dataclasses.is_dataclass(args[0]):
        return f"a list of {args[0].__name__} objects"
    plain = isinstance(hint, type) and typing.get_origin(hint) is None  # tuple[int, int] is a type in 3.10
    return hint.__name__ if plain else str(hint)


def checked_fields(cls: type, data, where: str, error: type[Exception]) -> dict:
    """``data`` for record ``cls``: an object with no unknown and no missing keys."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise error(f"{where}: unknown field(s) {', '.join(unknown)}")
    missing = [n for n, f in known.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{where}: missing field(s) {', '.join(missing)}")
    return dict(data)


def check_types(cls: type, data: dict, prefix: str, error: type[Exception]) -> None:
    """Raise ``error("<prefix><field>: expected <type>, got <value>")`` for the first field of
    ``data`` whose JSON type does not fit ``cls``'s annotation."""
    for name, hint in typing.get_type_hints(cls).items():
        if name in data and not conforms(data[name], hint):
            raise error(f"{prefix}{name}: expected {describe(hint)}, got {data[name]!r}")


def from_data(cls: type, data, where: str, error: type[Exception], prefix: str = ""):
    """Build record ``cls`` from JSON ``data``: types first (``<prefix><field>: expected ...``), then
    unknown / missing keys (``<where>: ...``), nested records read the same way, lists to tuples."""
    if isinstance(data, dict):
        check_types(cls, data, prefix, error)
    fields = checked_fields(cls, data, where, error)
    hints = typing.get_type_hints(cls)
    for name, value in fields.items():
        fields[name] = _build(hints[name], value, f"{prefix}{name}", error)
    return cls(**fields)


def _build(hint, value, where: str, error):
    if dataclasses.is_dataclass(hint):
        return from_data(hint, value, where, error, f"{where}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        records = [a for a in args if dataclasses.is_dataclass(a)]
        if records and isinstance(value, dict):
            return _build(records[0], value, where, error)
        return _tuples(value)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        return tuple(from_data(args[0], v, f"{where}[{i}]", error, f"{where}[{i}].")
                     for i, v in enumerate(value))
    return _tuples(value) if origin is tuple else value


def _tuples(value):
    """Lists (at any depth) back to tuples, as the frozen records hold them."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def read_text(path: str | Path, error: type[Exception]) -> str:
    """The text of the file ``path``; ``error`` in one line naming the file when it is missing or
    unreadable."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot be read ({err})") from None


def read_json(path: str | Path, error: type[Exception]):
    """The JSON document in the file ``path``; ``error`` in one line naming the file when it is
    missing, unreadable or not JSON."""
    text = read_text(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None


def check_versions(data, path: str | Path, error: type[Exception], **expected) -> None:
    """Refuse, naming the file, a document whose fields ``expected`` (a format name, a version) do
    not hold the values this reader knows: checked before any other field, so a file of another
    kind or version says so instead of listing fields."""
    for key, want in expected.items():
        got = data.get(key) if isinstance(data, dict) else None
        if got != want:
            raise error(f"{path}: {key}: this reader knows {want!r}, the file says {got!r}")


def read_record(path: str | Path, cls: type, error: type[Exception], **versions):
    """Record ``cls`` from the JSON file ``path`` (:func:`read_json`, :func:`check_versions`,
    :func:`from_data`); every error names the file."""
    data = read_json(path, error)
    check_versions(data, path, error, **versions)
    return from_data(cls, data, str(path), error, f"{path}: ")


def parse_yaml(data: bytes | str, where, error: type[Exception]):
    """``yaml.safe_load`` of a file's ``data``; bytes that are not UTF-8, or malformed YAML, raise
    ``error`` in one line naming ``where`` (for YAML the line and column and the problem: PyYAML's
    own message takes five)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {yaml_problem(exc)}") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: problem (context)`` of a PyYAML error (lines and columns from 1)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" + (f" ({context})" if context else "")
