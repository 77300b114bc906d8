"""The README a newcomer finishes: the two commands and the quick start on the first screen, the
sections in order, every page under docs/ linked from it, and no link or image pointing nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _outside_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_two_commands_and_the_quick_start_are_on_the_first_screen():
    first = README.splitlines()[:40]
    assert "make demo" in first[3] and "make test" in first[4]  # right under the title
    assert "## Quick start" in first


def test_the_readme_sections_come_in_order():
    headings = re.findall(r"^## (.+)$", _outside_code(README), re.M)
    assert headings == ["Quick start", "Energy: ReSpike against 3D CNNs at paper scale",
                        "Real footage: the hybrid against its branches", "Command line",
                        "Testing", "Further reading", "Licence, citation, changes"]


def test_every_page_under_docs_is_linked_from_the_readme():
    linked = {target.split("#")[0] for target in LINK.findall(README)}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, pages - linked


def test_every_relative_link_and_image_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(_outside_code(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", _outside_code(file.read_text()), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
