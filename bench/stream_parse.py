"""Per-token CPU cost of reading a model's chat-completions stream (runtime.clients.stream).

    .venv/bin/python bench/stream_parse.py [--tokens 40] [--rounds 2000]

Feeds the SSE lines of an OpenAI-shaped stream (one `data:` line per token, a finish chunk, a usage
chunk, `[DONE]`) through `ChatStreamAssembler.feed_line`, as `OpenAICompatibleProvider.stream` does,
and prints CPU µs per token (process CPU time, so a busy machine inflates it less than wall time).
Run it from two checkouts (PYTHONPATH=<checkout>) to compare before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("PYTHONPATH", "").split(":")[0] or os.path.dirname(os.path.dirname(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from runtime.clients.stream import ChatStreamAssembler  # noqa: E402


def stream_lines(tokens: int) -> list[str]:
    lines = []
    for i in range(tokens):
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764500000, "model": "gpt-4o-mini",
                 "system_fingerprint": "fp_bench",
                 "choices": [{"index": 0, "delta": {"content": f" 토큰{i}" if i % 2 else f" word{i}"},
                              "logprobs": None, "finish_reason": None}]}
        lines += ["data: " + json.dumps(chunk, ensure_ascii=False), ""]
    lines += ["data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {}, "finish_reason": "stop"}]}), ""]
    lines += ["data: " + json.dumps({"id": "chatcmpl-bench", "choices": [], "usage": {
        "prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}}), ""]
    lines += ["data: [DONE]", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    lines = stream_lines(args.tokens)
    for _ in range(50):  # warm up
        assembler = ChatStreamAssembler()
        for line in lines:
            assembler.feed_line(line)
    start = time.process_time()
    for _ in range(args.rounds):
        assembler = ChatStreamAssembler()
        for line in lines:
            assembler.feed_line(line)
        assembler.finish()
    cpu = time.process_time() - start
    per_token_us = cpu / (args.rounds * args.tokens) * 1e6
    print(json.dumps({"tokens": args.tokens, "rounds": args.rounds, "cpu_us_per_token": round(per_token_us, 2),
                      "cpu_ms_per_stream": round(cpu / args.rounds * 1000, 3)}))


if __name__ == "__main__":
    main()
