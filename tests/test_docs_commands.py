"""docs/ describe what the code does: a management command a page names exists."""

from __future__ import annotations

import re
from pathlib import Path

from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[1]


def test_every_management_command_named_in_the_docs_exists():
    named = set()
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        named |= {(page.name, m) for m in re.findall(r"management command `(\w+)`", text)}
        named |= {(page.name, m) for m in re.findall(r"manage\.py (\w+)", text)}
    commands = get_commands()
    assert sorted(f"{page}: {name}" for page, name in named if name not in commands) == []
