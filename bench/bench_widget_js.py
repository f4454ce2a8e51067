"""widget.js size against its budget (12 KB gzipped), and the sizes of what the chat panel loads.

    .venv/bin/python bench/bench_widget_js.py --out bench/results/widget_js.md

widget.js is measured as /widget.js serves it (the view fills in the versioned stylesheet path),
gzipped at level 9 as the view sends it. Exits with status 1 and says FAIL loudly when over budget.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
os.environ.setdefault("SECRET_KEY", "bench-widget-js")

BUDGET_GZIP = 12 * 1024
STATIC = ROOT / "static" / "widgets"
PANEL_ASSETS = ["embed.js", "../mejai/markdown.js", "embed.css"]  # markdown.js is shared with /chat


def gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def widget_js_served() -> bytes:
    import django

    django.setup()
    from widgets.views import widget_js_build

    raw, _gz, _etag = widget_js_build()
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown section here")
    parser.add_argument("--quick", action="store_true", help="same as a full run (this bench is instant)")
    args = parser.parse_args()

    started = time.monotonic()
    served = widget_js_served()
    raw_size, gz_size = len(served), gz(served)
    ok = gz_size <= BUDGET_GZIP
    rows = [("`widget.js` (as served)", raw_size, gz_size)]
    launcher = (STATIC / "launcher.css").read_bytes()
    rows.append(("`launcher.css` (host page)", len(launcher), gz(launcher)))
    panel_raw = panel_gz = 0
    for name in PANEL_ASSETS:
        data = (STATIC / name).read_bytes()
        panel_raw += len(data)
        panel_gz += gz(data)
        rows.append((f"`{name}` (chat iframe)", len(data), gz(data)))

    command = "python bench/bench_widget_js.py --out bench/results/widget_js.md"
    lines = [
        "## Web widget: widget.js size",
        "",
        f"`{command}` — {platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| asset | raw bytes | gzip -9 bytes |",
        "|---|---:|---:|",
    ]
    for name, raw_n, gz_n in rows:
        lines.append(f"| {name} | {raw_n:,} | {gz_n:,} |")
    lines += [
        f"| chat iframe total (JS + CSS) | {panel_raw:,} | {panel_gz:,} |",
        "",
        "| target | figure | met |",
        "|---|---|---|",
        f"| `widget.js` ≤ 12 KB gzipped ({BUDGET_GZIP:,} B) | {gz_size:,} B ({gz_size / BUDGET_GZIP:.0%} of budget) | "
        f"{'yes' if ok else '**NO — FAIL**'} |",
        "",
        "What limits it: widget.js is the only thing every page of a customer's site downloads; it holds the",
        "loader, the host API, the launcher and the postMessage bridge, and nothing else. The chat UI, the",
        "markdown renderer and their CSS load only inside the iframe (mejai's origin, cached separately).",
        "No build step and no minifier: the figure is of the readable source, gzipped.",
        "",
    ]
    if not ok:
        lines.insert(2, f"**FAIL: widget.js is {gz_size:,} B gzipped, over the {BUDGET_GZIP:,} B budget.**\n")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if not ok:
        print(f"\n!!! FAIL: widget.js gzipped {gz_size} B > budget {BUDGET_GZIP} B !!!", file=sys.stderr)
    print(f"(measured in {time.monotonic() - started:.2f} s)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
