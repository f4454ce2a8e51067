"""Log masking cost on adversarial lines: linear in the line, bounded by truncation (issue 10, finding 5).

    .venv/bin/python bench/bench_masking.py --out bench/results/masking.md [--quick]

Each input is a 16,000-character line built to make a backtracking regex scan once per position
(a long run of local-part characters with no '@', digit runs, separators). The figure is the
median time of mask_text over the line, and of the logging filter (which cuts the line to
LOG_MAX_CHARS first). Before the fix the email pattern alone took ~0.7-0.9 s on such a line.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
os.environ.setdefault("SECRET_KEY", "bench-masking")

INPUTS = {
    "letters, no @": "a" * 16000,
    "digits": "1" * 16000,
    "digit-hyphen": "1-" * 8000,
    "dotted words": "a.b" * 5333,
    "a@ repeated": "a@" * 8000,
    "U+2010 hyphens": "1\u2010" * 8000,
    "404 path": "/" + "x" * 15999,
}


def median_ms(fn, text: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "masking.md"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import django

    django.setup()
    from endusers.logging import PiiMaskingFilter
    from endusers.privacy import mask_text

    runs = 5 if args.quick else 21
    masking_filter = PiiMaskingFilter()

    def filtered(text: str) -> None:
        record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", (text,), None)
        masking_filter.filter(record)

    rows = [(name, len(text), median_ms(mask_text, text, runs), median_ms(filtered, text, runs))
            for name, text in INPUTS.items()]
    lines = ["## Log masking (adversarial 16,000-character lines)", "",
             f"Median of {runs} runs. `mask_text` on the whole line; the filter cuts to LOG_MAX_CHARS first.", "",
             "| input | chars | mask_text ms | filter ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {chars:,} | {a:.2f} | {b:.2f} |" for name, chars, a, b in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
