"""Split files -> dataset indexes: exact membership and labels, and bad input that never crashes.

The "videos" are empty files: indexing only looks at paths. Expectations are written by hand from
the split files each test writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from respike_nm.data.errors import SplitFileError
from respike_nm.data.records import DatasetIndex, Skipped
from respike_nm.data.splits import (
    build_index,
    folder_index,
    hmdb51_index,
    kinetics_index,
    ucf101_index,
)

CLASS_IND = "1 ApplyEyeMakeup\n2 Archery\n3 BabyCrawling\n"


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _members(records) -> list[tuple[str, int, str]]:
    """``(path relative to the videos' class folder's parent, label, class)`` in index order."""
    return [(f"{r.path.parent.name}/{r.path.name}", r.label, r.class_name) for r in records]


def _ucf_tree(root: Path, train: str, test: str,
              class_ind: str | bytes = CLASS_IND) -> tuple[Path, Path]:
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    _touch(videos, *(f"{c}/v_{c}_g{g:02d}_c01.avi"
                     for c in ("ApplyEyeMakeup", "Archery", "BabyCrawling") for g in (1, 2, 8, 9)))
    _write(lists / "classInd.txt", class_ind)
    _write(lists / "trainlist01.txt", train)
    _write(lists / "testlist01.txt", test)
    return videos, lists


# ---------------------------------------------------------------- UCF-101

UCF_TRAIN = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
    "BabyCrawling/v_BabyCrawling_g09_c01.avi 3\n"
    "Archery/v_Archery_g08_c01.avi 2\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 1\n"
)
UCF_TEST = (
    "Archery/v_Archery_g01_c01.avi\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
)
UCF_EXPECTED_TRAIN = [
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0, "ApplyEyeMakeup"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi", 0, "ApplyEyeMakeup"),
    ("Archery/v_Archery_g08_c01.avi", 1, "Archery"),
    ("BabyCrawling/v_BabyCrawling_g09_c01.avi", 2, "BabyCrawling"),
]
UCF_EXPECTED_TEST = [
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0, "ApplyEyeMakeup"),
    ("Archery/v_Archery_g01_c01.avi", 1, "Archery"),
]


def test_ucf101_reads_the_official_lists(tmp_path):
    videos, lists = _ucf_tree(tmp_path, UCF_TRAIN, UCF_TEST)
    index = ucf101_index(videos, lists, split=1)
    assert index.classes == ("ApplyEyeMakeup", "Archery", "BabyCrawling")
    assert _members(index.train) == UCF_EXPECTED_TRAIN
    assert _members(index.test) == UCF_EXPECTED_TEST
    assert index.skipped == ()
    assert index.train[0].path == videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"


def test_ucf101_crlf_blank_lines_trailing_spaces_and_lists_without_ids(tmp_path):
    crlf = CLASS_IND.replace("\n", "  \r\n") + "\r\n"
    train = "\r\n\r\n" + UCF_TRAIN.replace(" 1\n", "\n").replace(" 2\n", "\n").replace(" 3\n", "\n")
    train = train.replace("\n", " \r\n")
    test = "\ufeff" + UCF_TEST.replace("\n", "\t\r\n") + "   \r\n"
    videos, lists = _ucf_tree(tmp_path, train, test, crlf)
    index = ucf101_index(videos, lists)
    assert _members(index.train) == UCF_EXPECTED_TRAIN
    assert _members(index.test) == UCF_EXPECTED_TEST
    assert index.skipped == ()


def test_ucf101_malformed_lines_and_missing_videos_are_skipped_with_line_numbers(tmp_path):
    train = (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"  # 1 ok
        "Fencing/v_Fencing_g08_c01.avi\n"                 # 2 unknown class
        "Archery/v_Archery_g08_c01.avi two\n"             # 3 id not an integer
        "Archery/v_Archery_g08_c01.avi 2 2\n"             # 4 three fields
        "\n"                                              # 5 blank: ignored
        "Archery/v_Archery_g09_c01.avi 7\n"               # 6 id outside classInd
        "Archery/v_Archery_g09_c01.avi 1\n"               # 7 id disagrees with folder
        "Archery/v_Archery_g07_c01.avi 2\n"               # 8 valid, but no such video
    )
    videos, lists = _ucf_tree(tmp_path, train, UCF_TEST)
    trainlist = lists / "trainlist01.txt"
    index = ucf101_index(videos, lists)
    assert _members(index.train) == [UCF_EXPECTED_TRAIN[0]]
    assert _members(index.test) == UCF_EXPECTED_TEST
    assert {s.path for s in index.skipped} == {
        f"{trainlist}:{n}" for n in (2, 3, 4, 6, 7)
    } | {str(videos / "Archery/v_Archery_g07_c01.avi")}
    assert Skipped(str(videos / "Archery/v_Archery_g07_c01.avi"),
                   "listed in trainlist01.txt but missing") in index.skipped
    reasons = {s.path: s.reason for s in index.skipped}
    assert "Fencing" in reasons[f"{trainlist}:2"]
    assert "7" in reasons[f"{trainlist}:6"]


def test_ucf101_class_ids_out_of_order_with_a_bad_line_and_non_utf8_bytes(tmp_path):
    class_ind = b"3 BabyCrawling\n1 ApplyEyeMakeup\nArchery\n2 Arch\xe9ry\n2 Archery\n"
    videos, lists = _ucf_tree(tmp_path, UCF_TRAIN, UCF_TEST, class_ind)
    index = ucf101_index(videos, lists)
    assert index.classes == ("ApplyEyeMakeup", "Archery", "BabyCrawling")
    assert _members(index.train) == UCF_EXPECTED_TRAIN
    assert [s.path for s in index.skipped] == [f"{lists / 'classInd.txt'}:{n}" for n in (4, 3)]
    assert index.skipped[0].reason == "not UTF-8 text"


def test_ucf101_duplicates_are_kept_once_and_train_wins_over_test(tmp_path):
    train = UCF_TRAIN + "Archery/v_Archery_g08_c01.avi 2\nArchery/v_Archery_g01_c01.avi 2\n"
    videos, lists = _ucf_tree(tmp_path, train, UCF_TEST)
    index = ucf101_index(videos, lists)
    assert _members(index.train) == [
        *UCF_EXPECTED_TRAIN[:2], ("Archery/v_Archery_g01_c01.avi", 1, "Archery"),
        *UCF_EXPECTED_TRAIN[2:]]
    assert _members(index.test) == [UCF_EXPECTED_TEST[0]]
    assert index.skipped == (
        Skipped(str(videos / "Archery/v_Archery_g08_c01.avi"), "listed twice in train; kept once"),
        Skipped(str(videos / "Archery/v_Archery_g01_c01.avi"),
                "listed in train and in test; kept in train"),
    )


@pytest.mark.parametrize("gone", ["classInd.txt", "trainlist01.txt", "testlist01.txt"])
def test_ucf101_missing_split_file_raises_naming_it(tmp_path, gone):
    videos, lists = _ucf_tree(tmp_path, UCF_TRAIN, UCF_TEST)
    (lists / gone).unlink()
    with pytest.raises(SplitFileError, match=f"{gone}: no such file"):
        ucf101_index(videos, lists)


@pytest.mark.parametrize("text, problem", [
    ("", r"no entries \(empty file\)"),
    ("\r\n  \r\n", r"no entries \(empty file\)"),
    ("this is not a list\nnor this one\n", "no valid line"),
])
def test_ucf101_list_without_a_valid_line_raises(tmp_path, text, problem):
    videos, lists = _ucf_tree(tmp_path, text, UCF_TEST)
    with pytest.raises(SplitFileError, match=f"trainlist01.txt: {problem}"):
        ucf101_index(videos, lists)


def test_ucf101_bad_split_number_and_missing_video_root(tmp_path):
    videos, lists = _ucf_tree(tmp_path, UCF_TRAIN, UCF_TEST)
    with pytest.raises(ValueError, match="split must be 1, 2 or 3"):
        ucf101_index(videos, lists, split=4)
    with pytest.raises(SplitFileError, match="nowhere: no such folder"):
        ucf101_index(tmp_path / "nowhere", lists)


def test_ucf101_reads_the_split_named(tmp_path):
    videos, lists = _ucf_tree(tmp_path, UCF_TRAIN, UCF_TEST)
    _write(lists / "trainlist02.txt", "Archery/v_Archery_g01_c01.avi 2\n")
    _write(lists / "testlist02.txt", "BabyCrawling/v_BabyCrawling_g08_c01.avi\n")
    index = ucf101_index(videos, lists, split=2)
    assert _members(index.train) == [("Archery/v_Archery_g01_c01.avi", 1, "Archery")]
    assert _members(index.test) == [("BabyCrawling/v_BabyCrawling_g08_c01.avi", 2, "BabyCrawling")]


# ---------------------------------------------------------------- HMDB-51


def _hmdb_tree(root: Path) -> tuple[Path, Path]:
    videos, splits = root / "hmdb51_org", root / "testTrainMulti_7030_splits"
    _touch(videos, "kiss/a.avi", "kiss/b.avi", "kiss/c.avi", "kiss/d.avi",
           "brush_hair/e.avi", "brush_hair/f.avi", "brush_hair/g.avi")
    _write(splits / "kiss_test_split1.txt", "a.avi 1 \r\nb.avi 2 \r\nc.avi 0 \r\nd.avi 1 \r\n")
    _write(splits / "brush_hair_test_split1.txt", "e.avi 2 \nf.avi 1 \n\ng.avi 1 \n")
    _write(splits / "kiss_test_split2.txt", "a.avi 2\nb.avi 1\n")
    _write(splits / "brush_hair_test_split2.txt", "e.avi 1\n")
    return videos, splits


HMDB_EXPECTED_TEST = [("brush_hair/e.avi", 0, "brush_hair"), ("kiss/b.avi", 1, "kiss")]


def test_hmdb51_reads_the_official_split_files(tmp_path):
    videos, splits = _hmdb_tree(tmp_path)
    index = hmdb51_index(videos, splits, split=1)
    assert index.classes == ("brush_hair", "kiss")
    assert _members(index.train) == [
        ("brush_hair/f.avi", 0, "brush_hair"), ("brush_hair/g.avi", 0, "brush_hair"),
        ("kiss/a.avi", 1, "kiss"), ("kiss/d.avi", 1, "kiss"),
    ]
    assert _members(index.test) == HMDB_EXPECTED_TEST
    assert index.skipped == ()
    two = hmdb51_index(videos, splits, split=2)
    assert _members(two.train) == [("brush_hair/e.avi", 0, "brush_hair"), ("kiss/b.avi", 1, "kiss")]
    assert _members(two.test) == [("kiss/a.avi", 1, "kiss")]


def test_hmdb51_malformed_lines_and_missing_videos_are_skipped(tmp_path):
    videos, splits = _hmdb_tree(tmp_path)
    kiss = _write(splits / "kiss_test_split1.txt",
                  "a.avi 1\nb.avi 3\nc.avi\nd.avi x\ngone.avi 2\nb.avi 2\n")
    index = hmdb51_index(videos, splits)
    assert _members(index.train) == [
        ("brush_hair/f.avi", 0, "brush_hair"), ("brush_hair/g.avi", 0, "brush_hair"),
        ("kiss/a.avi", 1, "kiss"),
    ]
    assert _members(index.test) == HMDB_EXPECTED_TEST
    assert [s.path for s in index.skipped] == [
        f"{kiss}:2", f"{kiss}:3", f"{kiss}:4", str(videos / "kiss/gone.avi")]
    assert index.skipped[-1].reason == "listed in kiss_test_split1.txt but missing"


def test_hmdb51_missing_or_empty_split_files_raise(tmp_path):
    videos, splits = _hmdb_tree(tmp_path)
    with pytest.raises(SplitFileError, match="testTrainMulti_7030_splits: no <class>_test_split3"):
        hmdb51_index(videos, splits, split=3)
    with pytest.raises(SplitFileError, match="elsewhere: no such folder"):
        hmdb51_index(videos, tmp_path / "elsewhere")
    _write(splits / "kiss_test_split1.txt", "a.avi one\n")
    with pytest.raises(SplitFileError, match=r"kiss_test_split1.txt: no valid line \(1 malformed"):
        hmdb51_index(videos, splits)


# ---------------------------------------------------------------- Kinetics

KINETICS_CSV = (
    "youtube_id,label,time_start,time_end,split,is_cc\n"                 # 1 columns reordered
    "aaa,abseiling,14,24,train,0\n"                                       # 2 nested folder
    'bbb,"cooking egg, fried",0,10,train,0\n'                              # 3 comma in label
    "ccc,abseiling,5,15,val,1\n"                                          # 4 .mkv
    "ddd,arm wrestling,100,110,test,0\n"                                  # 5 .mp4 and .mkv
    "eee,abseiling,3,13,holdout,0\n"                                      # 6 ignored split
    "fff,abseiling,abc,10,train,0\n"                                      # 7 bad time
    "ggg,abseiling,0,10,train\n"                                          # 8 five fields
    "\n"                                                                  # 9 blank
    "hhh,arm wrestling,7,17,train,0\n"                                    # 10 no video
)


def _kinetics_tree(root: Path) -> Path:
    _touch(root, "train/abseiling/aaa_000014_000024.mp4", "bbb_000000_000010.mp4",
           "val/ccc_000005_000015.mkv", "ddd_000100_000110.mkv", "ddd_000100_000110.mp4",
           "eee_000003_000013.mp4", "notes.txt")
    return _write(root / "kinetics.csv", KINETICS_CSV)


def test_kinetics_reads_the_csv_and_finds_videos_anywhere(tmp_path):
    csv_path = _kinetics_tree(tmp_path)
    index = kinetics_index(csv_path, tmp_path)
    assert index.classes == ("abseiling", "arm wrestling", "cooking egg, fried")
    assert [(r.path, r.label, r.class_name) for r in index.train] == [
        (tmp_path / "train/abseiling/aaa_000014_000024.mp4", 0, "abseiling"),
        (tmp_path / "bbb_000000_000010.mp4", 2, "cooking egg, fried"),
    ]
    assert [(r.path, r.label, r.class_name) for r in index.test] == [
        (tmp_path / "val/ccc_000005_000015.mkv", 0, "abseiling"),
        (tmp_path / "ddd_000100_000110.mp4", 1, "arm wrestling"),
    ]
    assert [s.path for s in index.skipped] == [
        f"{csv_path}:7", f"{csv_path}:8", str(tmp_path / "hhh_000007_000017.mp4")]
    assert "time_start 'abc'" in index.skipped[0].reason
    assert index.skipped[2].reason == "listed in kinetics.csv but missing"


def test_kinetics_test_splits_choose_the_test_rows(tmp_path):
    csv_path = _kinetics_tree(tmp_path)
    index = kinetics_index(csv_path, tmp_path, test_splits=("holdout",))
    assert [r.path.name for r in index.test] == ["eee_000003_000013.mp4"]
    assert len(index.train) == 2


@pytest.mark.parametrize("text, problem", [
    ("label,youtube_id,time_start,split\nx,aaa,1,train\n", "header lacks column.s. time_end"),
    ("", r"no entries \(empty file\)"),
    ("label,youtube_id,time_start,time_end,split\nx,aaa,one,2,train\n", "no valid line"),
    ("label,youtube_id,time_start,time_end,split\nx,aaa,1,2,other\n", "no row with split"),
])
def test_kinetics_bad_csv_raises_naming_it(tmp_path, text, problem):
    path = _write(tmp_path / "ann.csv", text)
    with pytest.raises(SplitFileError, match=f"ann.csv: {problem}"):
        kinetics_index(path, tmp_path)


def test_kinetics_missing_or_binary_csv_raises(tmp_path):
    with pytest.raises(SplitFileError, match="absent.csv: no such file"):
        kinetics_index(tmp_path / "absent.csv", tmp_path)
    path = _write(tmp_path / "bin.csv", b"label,youtube_id\n\xff\xfe\x00\n")
    with pytest.raises(SplitFileError, match="bin.csv: not UTF-8"):
        kinetics_index(path, tmp_path)


# ---------------------------------------------------------------- class folders


def _folder_tree(root: Path, sizes: dict[str, int]) -> Path:
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        _touch(root / name, *(f"clip{i:02d}.mp4" for i in range(n)))
    return root


def test_folder_split_is_stratified_and_covers_every_video(tmp_path):
    root = _folder_tree(tmp_path / "ds", {"walk": 10, "run": 5, "jump": 2, "wave": 1})
    _touch(root, "walk/readme.txt", "stray.avi", "empty/notes.md")
    index = folder_index(root, test_fraction=0.2, seed=3)
    assert index.classes == ("jump", "run", "walk", "wave")
    test_count = {c: sum(r.class_name == c for r in index.test) for c in index.classes}
    assert test_count == {"jump": 1, "run": 1, "walk": 2, "wave": 0}
    everything = sorted(str(r.path) for r in index.train + index.test)
    assert everything == sorted(str(p) for p in root.glob("*/*.mp4"))
    assert all(index.classes[r.label] == r.class_name == r.path.parent.name
               for r in index.train + index.test)
    assert set(index.skipped) == {
        Skipped(str(root / "empty"), "class folder without video files"),
        Skipped(str(root / "stray.avi"), "video outside a class folder"),
    }


def test_folder_split_depends_on_the_seed_only(tmp_path):
    root = _folder_tree(tmp_path / "ds", {"a": 6, "b": 6, "c": 6})

    def test_set(index: DatasetIndex) -> frozenset[str]:
        return frozenset(str(r.path) for r in index.test)

    assert folder_index(root, seed=5) == folder_index(root, seed=5)
    assert len({test_set(folder_index(root, seed=s)) for s in range(10)}) > 1
    before = {r.path for r in folder_index(root, seed=1).test}
    _folder_tree(root, {"d": 4})  # a new class does not move the others' test videos
    after = folder_index(root, seed=1)
    assert {r.path for r in after.test if r.class_name != "d"} == before
    assert after.classes == ("a", "b", "c", "d")


def test_folder_bad_arguments(tmp_path):
    with pytest.raises(SplitFileError, match="nothing: no such folder"):
        folder_index(tmp_path / "nothing")
    _touch(tmp_path, "only/readme.txt")
    with pytest.raises(SplitFileError, match="no class folder with video files"):
        folder_index(tmp_path)
    with pytest.raises(ValueError, match="test_fraction"):
        folder_index(tmp_path, test_fraction=1.0)


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("RESPIKE_REALDATA"), reason="RESPIKE_REALDATA not set")
def test_folder_index_of_the_real_gestures():
    index = folder_index(Path(os.environ["RESPIKE_REALDATA"], "gestures"))
    assert len(index.classes) == 3
    assert (len(index.train), len(index.test)) == (15, 3)


# ---------------------------------------------------------------- by name


def test_build_index_uses_the_official_download_layouts(tmp_path):
    videos, lists = _ucf_tree(tmp_path / "ucf", UCF_TRAIN, UCF_TEST)
    assert build_index("ucf101", tmp_path / "ucf") == ucf101_index(videos, lists)
    flat = tmp_path / "ucf_flat"
    (tmp_path / "ucf").rename(flat)
    (flat / "UCF-101").rename(flat / "videos")
    index = build_index("ucf101", flat, video_root=flat / "videos")
    assert _members(index.train) == UCF_EXPECTED_TRAIN

    videos, splits = _hmdb_tree(tmp_path / "hmdb")
    assert build_index("hmdb51", tmp_path / "hmdb", split=2) == hmdb51_index(videos, splits, 2)

    csv_path = _kinetics_tree(tmp_path / "kin")
    single = build_index("kinetics", tmp_path / "kin")
    assert single == kinetics_index(csv_path, tmp_path / "kin")
    # the official download ships several CSVs (train, validate, test): all are read
    _write(tmp_path / "kin" / "other.csv", KINETICS_CSV)
    merged = build_index("kinetics", tmp_path / "kin")
    assert _members(merged.train) == _members(single.train)
    assert _members(merged.test) == _members(single.test)
    assert len(merged.skipped) > len(single.skipped)  # the repeated rows are reported

    root = _folder_tree(tmp_path / "fold", {"a": 3, "b": 4})
    assert build_index("folder", root, seed=2) == folder_index(root, seed=2)


def test_build_index_videos_directly_under_root(tmp_path):
    _touch(tmp_path, "kiss/a.avi", "kiss/b.avi")
    _write(tmp_path / "testTrainMulti_7030_splits/kiss_test_split1.txt", "a.avi 1\nb.avi 2\n")
    index = build_index("hmdb51", tmp_path)
    assert _members(index.train) == [("kiss/a.avi", 0, "kiss")]
    assert _members(index.test) == [("kiss/b.avi", 0, "kiss")]


def test_build_index_rejects_unknown_names_and_missing_roots(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'ucf102'; valid: ucf101, hmdb51, "
                                         "kinetics, folder"):
        build_index("ucf102", tmp_path)
    with pytest.raises(SplitFileError, match="missing: no such folder"):
        build_index("folder", tmp_path / "missing")
    with pytest.raises(SplitFileError, match="no \\*.csv annotation file"):
        build_index("kinetics", tmp_path)
