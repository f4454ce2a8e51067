"""The dependency direction of docs/architecture.md, checked on the source: runtime imports neither
endusers nor a channel app; no channel app imports another; endusers' selectors do not import its services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {"widgets", "kakao", "mchat", "assistant"}


def _imports(app: str) -> set[tuple[str, str]]:
    """(file, imported top-level module or module path) for every import in the app's code (tests excluded)."""
    found = set()
    for path in (ROOT / app).rglob("*.py"):
        if "tests" in path.relative_to(ROOT / app).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(ROOT)), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module))
    return found


def _offending(app: str, forbidden: set[str]) -> list[str]:
    return sorted(f"{file}: {module}" for file, module in _imports(app) if module.split(".")[0] in forbidden)


def test_runtime_imports_no_endusers_and_no_channel():
    assert _offending("runtime", CHANNELS | {"endusers"}) == []


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_no_channel_imports_another(channel):
    assert _offending(channel, CHANNELS - {channel}) == []


def test_endusers_selectors_do_not_import_its_services():
    modules = {module for file, module in _imports("endusers") if file.endswith("selectors.py")}
    assert "endusers.services" not in modules


def test_every_doc_named_in_the_code_exists():
    import re
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = set()
    for name in listed:
        if not name.endswith((".py", ".md", ".html", ".js", ".yml", ".toml")) or name.startswith("bench/results"):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for ref in re.findall(r"(?<![\w/.])docs/[\w./-]+\.md", text):
            if not (ROOT / ref).exists():
                missing.add(f"{name}: {ref}")
    assert sorted(missing) == []
