"""The README and docs link only to files that exist in the repository (issue 11, 9)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`[^`]*`")  # markdown shown as an example, not a link


def test_relative_links_point_inside_the_repository_at_files_that_exist():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]:
        text = "\n".join(CODE.sub("", line) for line in doc.read_text().splitlines())
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            path = (doc.parent / target).resolve()
            if ROOT not in path.parents and path != ROOT or not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_readme_mentions_no_path_outside_the_repository():
    assert "../shared" not in (ROOT / "README.md").read_text()


def test_make_run_installs_only_what_running_needs():
    makefile = (ROOT / "Makefile").read_text()
    run_chain = re.search(r"^\$\(STAMP\):.*?(?=^\S)", makefile, re.M | re.S).group(0)
    assert "requirements.txt" in run_chain and "requirements-dev.txt" not in run_chain
    assert re.search(r"^test: install-dev", makefile, re.M)
    runtime = (ROOT / "requirements.txt").read_text().lower()
    for tool in ("pytest", "playwright", "ruff"):
        assert tool not in runtime
