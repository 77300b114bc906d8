"""Dataset indexes: which videos are train and test, with 0-based labels, from official splits.

Layouts, with the defaults :func:`build_index` takes from ``root`` in brackets:

UCF-101 (``ucf101``, splits 1-3)::

    root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi   [video_root: root/UCF-101 if it exists, else root]
    root/ucfTrainTestlist/                       [split_dir]
        classInd.txt       "1 ApplyEyeMakeup"                           (1-based class ids)
        trainlist0N.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"  (id may be absent)
        testlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"    (class from folder)

HMDB-51 (``hmdb51``, splits 1-3)::

    root/hmdb51_org/<class>/<file>.avi       [video_root: root/hmdb51_org if it exists, else root]
    root/testTrainMulti_7030_splits/             [split_dir]
        <class>_test_split<N>.txt    "<file>.avi <id>"   id 1: train, 2: test, 0: unused

Kinetics (``kinetics``)::

    root/<the one>.csv     [annotation_csv]  header label,youtube_id,time_start,time_end,split
                           (any column order, extra columns such as is_cc allowed)
    root/**/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4   [video_dir: root]
                           (any folder depth; .mkv, .webm, ... with the same stem also found)

Class folders (``folder``)::

    root/<class>/<video files>   split per class by a seed (stratified), or cut into
                                 cross-validation folds grouped by subject (``folds``)

Labels index the sorted class names (UCF-101: classInd order). Records are sorted by
``(label, path)``.

Bad input: a missing or unreadable split file, class index, CSV or folder, or a file with no valid
line at all, raises :class:`SplitFileError` naming it. A malformed line or row is left out and
recorded in ``DatasetIndex.skipped`` as ``Skipped("<file>:<line>", reason)``; so is a listed video
that does not exist (``Skipped(<video path>, "listed in <file> but missing")``).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from respike_nm.data.errors import SplitFileError
from respike_nm.data.folds import FoldSpec, assign_folds, file_groups, fold_count
from respike_nm.data.records import DatasetIndex, Skipped, VideoRecord
from respike_nm.data.video import VIDEO_EXTENSIONS
from respike_nm.errors import UsageError

log = logging.getLogger(__name__)

SPLITS = (1, 2, 3)
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_T = TypeVar("_T")


class _BadLine(Exception):
    """One line or row of a split file is malformed; its message is the reason."""


class _Entry(NamedTuple):
    """A valid line: a video path relative to the video root, its label, the file listing it."""

    rel: str
    label: int
    source: Path


# ---------------------------------------------------------------- reading files


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SplitFileError(path, "no such file") from None
    except IsADirectoryError:
        raise SplitFileError(path, "is a folder, not a file") from None
    except OSError as e:
        raise SplitFileError(path, f"cannot be read ({e.strerror or e})") from None


def _check_folder(path: Path) -> Path:
    if not path.is_dir():
        raise SplitFileError(path, "no such folder" if not path.exists() else "not a folder")
    return path


def _text_lines(path: Path, skipped: list[Skipped]) -> list[tuple[int, str]]:
    """Non-blank lines as ``(1-based line number, stripped text)``; CR, LF and CRLF all end a
    line. A line that is not UTF-8 goes to ``skipped``."""
    out = []
    for number, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            skipped.append(Skipped(f"{path}:{number}", "not UTF-8 text"))
            continue
        if text:
            out.append((number, text))
    return out


def _no_valid_line(path: Path, problems: Sequence[Skipped]) -> SplitFileError:
    if not problems:
        return SplitFileError(path, "no entries (empty file)")
    first = problems[0]
    return SplitFileError(path, f"no valid line ({len(problems)} malformed; first, "
                                f"line {first.path.rsplit(':', 1)[-1]}: {first.reason})")


def _parse_lines(path: Path, parse: Callable[[str], _T], skipped: list[Skipped]) -> list[_T]:
    """``parse`` applied to every non-blank line; a line it rejects (``_BadLine``) goes to
    ``skipped``. Raises ``SplitFileError`` when no line is valid."""
    start = len(skipped)
    out = []
    for number, text in _text_lines(path, skipped):
        try:
            out.append(parse(text))
        except _BadLine as e:
            skipped.append(Skipped(f"{path}:{number}", str(e)))
    if not out:
        raise _no_valid_line(path, skipped[start:])
    return out


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _BadLine(f"{what} {text!r} is not an integer") from None


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, following folder links, hidden names left out; sorted."""
    out = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out.extend(Path(folder) / n for n in names if not n.startswith("."))
    return sorted(out)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


class _VideoFiles:
    """The files under a video root, found by relative path: exactly, else ignoring case (copies
    of UCF-101 differ in the case of e.g. ``HandstandPushups``)."""

    def __init__(self, root: Path):
        self.root = _check_folder(root)
        self.exact = {p.relative_to(root).as_posix(): p for p in _walk(root)}
        self.folded = {rel.lower(): p for rel, p in self.exact.items()}

    def find(self, rel: str) -> Path | None:
        return self.exact.get(rel) or self.folded.get(rel.lower())


# ---------------------------------------------------------------- assembling an index


def _missing(path: Path, listed_in: Path) -> Skipped:
    return Skipped(str(path), f"listed in {listed_in.name} but missing")


def _resolve(entries: Iterable[_Entry], files: _VideoFiles, classes: Sequence[str],
             skipped: list[Skipped]) -> list[VideoRecord]:
    """Records for the entries whose video exists; the others go to ``skipped``."""
    out = []
    for e in entries:
        path = files.find(e.rel)
        if path is None:
            skipped.append(_missing(files.root / e.rel, e.source))
        else:
            out.append(VideoRecord(path, e.label, classes[e.label]))
    return out


def _unique(records: Iterable[VideoRecord], part: str, skipped: list[Skipped]) -> list[VideoRecord]:
    seen: set[Path] = set()
    out = []
    for r in records:
        if r.path in seen:
            skipped.append(Skipped(str(r.path), f"listed twice in {part}; kept once"))
        else:
            seen.add(r.path)
            out.append(r)
    return out


def _finish(name: str, classes: Sequence[str], train: Iterable[VideoRecord],
            test: Iterable[VideoRecord], skipped: list[Skipped]) -> DatasetIndex:
    """Drop duplicates (a video in train and test stays in train only), sort, and log a warning
    when a partition came out empty."""
    train = _unique(train, "train", skipped)
    in_train = {r.path for r in train}
    test = _unique(test, "test", skipped)
    for r in test:
        if r.path in in_train:
            skipped.append(Skipped(str(r.path), "listed in train and in test; kept in train"))
    test = [r for r in test if r.path not in in_train]
    if not train or not test:
        log.warning("%s index: %d train and %d test videos, %d inputs skipped",
                    name, len(train), len(test), len(skipped))

    def order(records: list[VideoRecord]) -> tuple[VideoRecord, ...]:
        return tuple(sorted(records, key=lambda r: (r.label, r.path.as_posix())))

    return DatasetIndex(name, tuple(classes), order(train), order(test), tuple(skipped))


def _check_split(split: int) -> None:
    if split not in SPLITS:
        raise UsageError(f"split must be 1, 2 or 3, not {split!r}")


# ---------------------------------------------------------------- UCF-101


class _ClassInd(NamedTuple):
    """classInd.txt: class names in id order, and 1-based id -> 0-based label."""

    names: tuple[str, ...]
    label_of_id: dict[int, int]

    def label_of_name(self, name: str) -> int | None:
        folded = name.lower()
        return next((i for i, n in enumerate(self.names) if n.lower() == folded), None)


def _read_class_ind(path: Path, skipped: list[Skipped]) -> _ClassInd:
    ids: dict[int, str] = {}

    def parse(text: str) -> None:
        fields = text.split()
        if len(fields) != 2:
            raise _BadLine(f"expected '<id> <ClassName>', got {text!r}")
        cid = _int(fields[0], "class id")
        if cid in ids or fields[1] in ids.values():
            raise _BadLine(f"class id {cid} or name {fields[1]!r} given twice")
        ids[cid] = fields[1]

    _parse_lines(path, parse, skipped)
    order = sorted(ids)
    return _ClassInd(tuple(ids[i] for i in order), {cid: lab for lab, cid in enumerate(order)})


def _ucf_label(rel: str, label_id: str | None, table: _ClassInd) -> int:
    """The label of a list line: from its id when given (checked against the folder), else from
    the class folder."""
    parts = rel.split("/")
    folder = parts[-2] if len(parts) >= 2 else None
    by_folder = None if folder is None else table.label_of_name(folder)
    if label_id is None:
        if folder is None:
            raise _BadLine(f"{rel!r} has no class folder and the line no label id")
        if by_folder is None:
            raise _BadLine(f"unknown class {folder!r} (not in classInd.txt)")
        return by_folder
    cid = _int(label_id, "label id")
    if cid not in table.label_of_id:
        raise _BadLine(f"label id {cid} is not in classInd.txt")
    label = table.label_of_id[cid]
    if folder is not None and by_folder != label:
        raise _BadLine(f"label id {cid} ({table.names[label]}) disagrees with folder {folder!r}")
    return label


def _read_ucf_list(path: Path, table: _ClassInd, skipped: list[Skipped]) -> list[_Entry]:
    def parse(text: str) -> _Entry:
        fields = text.split()
        if len(fields) > 2:
            raise _BadLine(f"expected '<Class>/<file> [<id>]', got {text!r}")
        rel = fields[0].replace("\\", "/")
        return _Entry(rel, _ucf_label(rel, fields[1] if len(fields) == 2 else None, table), path)

    return _parse_lines(path, parse, skipped)


def ucf101_index(video_root: str | Path, split_dir: str | Path, split: int = 1) -> DatasetIndex:
    """UCF-101's official train/test split ``split`` (1-3); labels follow classInd.txt."""
    _check_split(split)
    split_dir = Path(split_dir)
    skipped: list[Skipped] = []
    table = _read_class_ind(split_dir / "classInd.txt", skipped)
    train = _read_ucf_list(split_dir / f"trainlist0{split}.txt", table, skipped)
    test = _read_ucf_list(split_dir / f"testlist0{split}.txt", table, skipped)
    files = _VideoFiles(Path(video_root))
    return _finish("ucf101", table.names, _resolve(train, files, table.names, skipped),
                   _resolve(test, files, table.names, skipped), skipped)


# ---------------------------------------------------------------- HMDB-51


def _hmdb_split_files(split_dir: Path, split: int) -> dict[str, Path]:
    """Class name -> its ``<class>_test_split<N>.txt``."""
    suffix = f"_test_split{split}.txt"
    files = sorted(_check_folder(split_dir).glob(f"*{suffix}"))
    named = {p.name[: -len(suffix)]: p for p in files if p.is_file() and len(p.name) > len(suffix)}
    if not named:
        raise SplitFileError(split_dir, f"no <class>{suffix} files")
    return named


def _read_hmdb_file(path: Path, label: int, class_name: str,
                    skipped: list[Skipped]) -> list[tuple[int, _Entry]]:
    """``(part id, entry)`` per valid line: 0 unused, 1 train, 2 test."""
    def parse(text: str) -> tuple[int, _Entry]:
        fields = text.split()
        if len(fields) != 2:
            raise _BadLine(f"expected '<file> <id>', got {text!r}")
        part = _int(fields[1], "id")
        if part not in (0, 1, 2):
            raise _BadLine(f"id {part} is not 0 (unused), 1 (train) or 2 (test)")
        return part, _Entry(f"{class_name}/{fields[0]}", label, path)

    return _parse_lines(path, parse, skipped)


def hmdb51_index(video_root: str | Path, split_dir: str | Path, split: int = 1) -> DatasetIndex:
    """HMDB-51's official split ``split`` (1-3); classes are those with a split file, sorted."""
    _check_split(split)
    by_class = _hmdb_split_files(Path(split_dir), split)
    classes = tuple(sorted(by_class))
    skipped: list[Skipped] = []
    parts: dict[int, list[_Entry]] = {0: [], 1: [], 2: []}
    for label, name in enumerate(classes):
        for part, entry in _read_hmdb_file(by_class[name], label, name, skipped):
            parts[part].append(entry)
    files = _VideoFiles(Path(video_root))
    return _finish("hmdb51", classes, _resolve(parts[1], files, classes, skipped),
                   _resolve(parts[2], files, classes, skipped), skipped)


# ---------------------------------------------------------------- Kinetics


class _KineticsRow(NamedTuple):
    label: str
    stem: str  # <youtube_id>_<time_start:06d>_<time_end:06d>
    split: str


def _read_csv_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SplitFileError(path, f"not UTF-8 text (byte {e.start})") from None


def _csv_columns(path: Path, header: list[str] | None) -> tuple[dict[str, int], int]:
    """Column name -> position, and the number of columns."""
    if header is None:
        raise SplitFileError(path, "no entries (empty file)")
    columns = [h.strip().lower() for h in header]
    missing = [c for c in KINETICS_COLUMNS if c not in columns]
    if missing:
        raise SplitFileError(path, f"header lacks column(s) {', '.join(missing)} "
                                   f"(found: {', '.join(columns)})")
    return {c: columns.index(c) for c in KINETICS_COLUMNS}, len(columns)


def _seconds(text: str, what: str) -> int:
    value = _int(text, what)
    if value < 0:
        raise _BadLine(f"{what} {value} is negative")
    return value


def _kinetics_row(row: list[str], at: dict[str, int], width: int) -> _KineticsRow:
    if len(row) != width:
        raise _BadLine(f"expected {width} fields, found {len(row)}")
    label, youtube_id = row[at["label"]].strip(), row[at["youtube_id"]].strip()
    if not label or not youtube_id:
        raise _BadLine("empty label or youtube_id")
    start = _seconds(row[at["time_start"]].strip(), "time_start")
    end = _seconds(row[at["time_end"]].strip(), "time_end")
    return _KineticsRow(label, f"{youtube_id}_{start:06d}_{end:06d}",
                        row[at["split"]].strip().lower())


def _read_kinetics_csv(path: Path, skipped: list[Skipped]) -> list[_KineticsRow]:
    reader = csv.reader(io.StringIO(_read_csv_text(path), newline=""))
    start, out = len(skipped), []
    try:
        at, width = _csv_columns(path, next(reader, None))
        for row in reader:
            if not any(f.strip() for f in row):
                continue
            try:
                out.append(_kinetics_row(row, at, width))
            except _BadLine as e:
                skipped.append(Skipped(f"{path}:{reader.line_num}", str(e)))
    except csv.Error as e:
        raise SplitFileError(path, f"line {reader.line_num}: {e}") from None
    if not out:
        raise _no_valid_line(path, skipped[start:])
    return out


def _videos_by_stem(video_dir: Path) -> dict[str, Path]:
    """File stem -> video under ``video_dir`` (any depth); ``.mp4`` wins over other extensions."""
    found: dict[str, Path] = {}
    for path in _walk(_check_folder(video_dir)):
        if _is_video(path):
            old = found.get(path.stem)
            if old is None or (old.suffix.lower() != ".mp4" and path.suffix.lower() == ".mp4"):
                found[path.stem] = path
    return found


def kinetics_index(annotation_csv: str | Path | Sequence[str | Path], video_dir: str | Path,
                   test_splits: Sequence[str] = ("val", "test")) -> DatasetIndex:
    """Kinetics from one annotation CSV or several (the official train/validate/test files):
    rows of split ``train`` go to train, rows whose split is in ``test_splits`` to test, others are
    ignored. Classes: the sorted labels of those rows."""
    csvs = ([Path(annotation_csv)] if isinstance(annotation_csv, (str, Path))
            else [Path(p) for p in annotation_csv])
    annotation_csv, video_dir = csvs[0], Path(video_dir)
    wanted = {s.lower() for s in ((test_splits,) if isinstance(test_splits, str) else test_splits)}
    if "train" in wanted:
        raise UsageError("test_splits must not contain 'train'")
    skipped: list[Skipped] = []
    rows = [r for path in csvs for r in _read_kinetics_csv(path, skipped)
            if r.split == "train" or r.split in wanted]
    if not rows:
        splits = ", ".join(sorted(wanted))
        raise SplitFileError(annotation_csv, f"no row with split train or {splits}")
    classes = tuple(sorted({r.label for r in rows}))
    videos = _videos_by_stem(video_dir)
    parts: dict[bool, list[VideoRecord]] = {True: [], False: []}
    for r in rows:
        path = videos.get(r.stem)
        if path is None:
            skipped.append(_missing(video_dir / f"{r.stem}.mp4", annotation_csv))
        else:
            parts[r.split == "train"].append(VideoRecord(path, classes.index(r.label), r.label))
    return _finish("kinetics", classes, parts[True], parts[False], skipped)


# ---------------------------------------------------------------- class folders


def _class_videos(root: Path, skipped: list[Skipped]) -> dict[str, list[Path]]:
    """Class folder name -> its video files (any depth, sorted). Empty class folders and videos
    outside a class folder go to ``skipped``; no class folder with videos at all is an error."""
    out = {}
    for entry in sorted(_check_folder(root).iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            videos = [p for p in _walk(entry) if _is_video(p)]
            if videos:
                out[entry.name] = videos
            else:
                skipped.append(Skipped(str(entry), "class folder without video files"))
        elif _is_video(entry):
            skipped.append(Skipped(str(entry), "video outside a class folder"))
    if not out:
        raise SplitFileError(root, "no class folder with video files (expected <class>/<video>)")
    return out


def _test_count(n: int, test_fraction: float) -> int:
    """``round(test_fraction * n)``, but at least one test and one train video when n >= 2."""
    return 0 if n < 2 else min(n - 1, max(1, round(test_fraction * n)))


def folder_index(root: str | Path, test_fraction: float = 0.2, seed: int = 0,
                 folds: FoldSpec | None = None) -> DatasetIndex:
    """``root/<class>/<videos>`` split per class: :func:`_test_count` videos of each class, drawn
    by ``seed``, go to test. A class's draw depends only on the seed, its name and its files.
    With ``folds``, the split is cross-validation fold ``folds.fold`` instead: that fold is the
    test set, the other folds the training set (:func:`folder_folds`)."""
    if folds is not None:
        return folder_folds(root, folds).index(folds.fold)
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction}")
    root = Path(root)
    skipped: list[Skipped] = []
    videos = _class_videos(root, skipped)
    classes = tuple(sorted(videos))
    train, test = [], []
    for label, name in enumerate(classes):
        paths = videos[name]
        draw = random.Random(f"{seed}/{name}")
        chosen = set(draw.sample(paths, _test_count(len(paths), test_fraction)))
        for p in paths:
            (test if p in chosen else train).append(VideoRecord(p, label, name))
    return _finish("folder", classes, train, test, skipped)


@dataclass(frozen=True)
class FolderFolds:
    """A class-folder dataset cut into ``k`` folds: every video with its group (None without a
    group pattern) and fold, in ``(label, path)`` order."""

    root: Path
    classes: tuple[str, ...]
    records: tuple[VideoRecord, ...]
    groups: tuple[str, ...] | None
    folds: tuple[int, ...]
    k: int
    skipped: tuple[Skipped, ...]

    def index(self, fold: int) -> DatasetIndex:
        """Fold ``fold`` as the test set, the others as the training set."""
        if not 0 <= fold < self.k:
            raise UsageError(f"data.fold must lie in 0..{self.k - 1}, not {fold}")
        train = [r for r, f in zip(self.records, self.folds, strict=True) if f != fold]
        test = [r for r, f in zip(self.records, self.folds, strict=True) if f == fold]
        return _finish("folder", self.classes, train, test, list(self.skipped))

    def test_groups(self, fold: int) -> tuple[str, ...]:
        """The groups whose videos fold ``fold`` tests on (sorted; empty without groups)."""
        if self.groups is None:
            return ()
        return tuple(sorted({g for g, f in zip(self.groups, self.folds, strict=True) if f == fold}))


def folder_folds(root: str | Path, spec: FoldSpec) -> FolderFolds:
    """``root/<class>/<videos>`` assigned to ``spec``'s folds (:mod:`respike_nm.data.folds`):
    stratified by class, whole groups to one fold when ``spec.group_pattern`` is given."""
    root = Path(root)
    skipped: list[Skipped] = []
    videos = _class_videos(root, skipped)
    classes = tuple(sorted(videos))
    records = tuple(VideoRecord(p, label, name) for label, name in enumerate(classes)
                    for p in videos[name])
    labels = [r.label for r in records]
    groups = file_groups([r.path for r in records], spec, root) if spec.group_pattern else None
    k = fold_count(spec, labels, groups, classes, root)
    return FolderFolds(root, classes, records, groups, assign_folds(labels, groups, k, spec.seed), k,
                       tuple(skipped))


# ---------------------------------------------------------------- by name


def _first_folder(*candidates: Path) -> Path:
    return next((c for c in candidates if c.is_dir()), candidates[-1])


def _ucf101_at(root: Path, split: int = 1, split_dir: str | Path | None = None,
               video_root: str | Path | None = None) -> DatasetIndex:
    return ucf101_index(video_root or _first_folder(root / "UCF-101", root),
                        split_dir or root / "ucfTrainTestlist", split)


def _hmdb51_at(root: Path, split: int = 1, split_dir: str | Path | None = None,
               video_root: str | Path | None = None) -> DatasetIndex:
    return hmdb51_index(video_root or _first_folder(root / "hmdb51_org", root),
                        split_dir or root / "testTrainMulti_7030_splits", split)


def _the_csvs(root: Path) -> list[Path]:
    """Every ``*.csv`` in ``root`` (the official download has train, validate and test files)."""
    found = sorted(p for p in root.glob("*.csv") if p.is_file())
    if not found:
        raise SplitFileError(root, "no *.csv annotation file; pass annotation_csv")
    return found


def _kinetics_at(root: Path, annotation_csv: str | Path | None = None,
                 video_dir: str | Path | None = None,
                 test_splits: Sequence[str] = ("val", "test")) -> DatasetIndex:
    return kinetics_index(annotation_csv or _the_csvs(root), video_dir or root, test_splits)


_BUILDERS: dict[str, Callable[..., DatasetIndex]] = {
    "ucf101": _ucf101_at,
    "hmdb51": _hmdb51_at,
    "kinetics": _kinetics_at,
    "folder": folder_index,
}
INDEX_NAMES = tuple(_BUILDERS)


def build_index(name: str, root: str | Path, **kwargs) -> DatasetIndex:
    """The index of dataset ``name`` (one of :data:`INDEX_NAMES`) laid out under ``root`` as the
    module docstring shows; ``kwargs`` go to its function (``split``, ``split_dir``,
    ``video_root``; ``annotation_csv``, ``video_dir``, ``test_splits``; ``test_fraction``,
    ``seed``, ``folds``)."""
    if name not in _BUILDERS:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(INDEX_NAMES)}")
    return _BUILDERS[name](_check_folder(Path(root)), **kwargs)
