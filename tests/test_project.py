"""Project metadata agrees with itself: one version, and the files a user and a contributor expect."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import respike_nm

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_lives_in_one_place():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == respike_nm.__version__
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert released[0] == respike_nm.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)  # read from the package
    code = "import importlib.metadata as m; print(m.version('respike-nm'))"
    meta = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert meta.stdout.strip() == respike_nm.__version__


def test_licence_citation_and_changelog_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert (ROOT / name).is_file() and f"({name})" in readme
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["license"] == "MIT" and "2409.01564" in str(cff["preferred-citation"])


@pytest.mark.skipif(bool(os.environ.get("RESPIKE_NO_LOCK")), reason="installed without the lock file")
def test_the_venv_has_the_versions_of_the_lock_file():
    lock = {}
    for line in (ROOT / "requirements" / "lock-py310.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[name.lower().replace("_", "-")] = version
    for pkg in ("torch", "lava-nc", "lava-dl", "norse", "numpy", "h5py", "av", "ruff", "pytest"):
        assert pkg in lock, pkg
    assert lock["lava-nc"] == "0.10.0" and lock["lava-dl"] == "0.6.0" and lock["numpy"].startswith("1.")
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version
                 for d in importlib.metadata.distributions()}
    wrong = {k: (installed[k], v) for k, v in lock.items() if k in installed and installed[k] != v}
    assert not wrong, f"installed vs locked: {wrong}"
