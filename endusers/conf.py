"""Settings of the endusers app, read from the environment (or Django settings) with defaults."""

from __future__ import annotations

from mejai.env import env_float as _float
from mejai.env import env_int as _int

# Turns (and their timeline rows) older than this many days are deleted by `purge_expired`; 0 keeps them.
RETENTION_DAYS = _int("ENDUSERS_RETENTION_DAYS", 365)
# A memory is one short fact; longer text is refused with a clear error.
MEMORY_MAX_CHARS = _int("ENDUSERS_MEMORY_MAX_CHARS", 500)
# Memories handed to the context builder for one message.
GROUNDING_MEMORIES = _int("ENDUSERS_GROUNDING_MEMORIES", 5)
# Trigram word similarity at which a memory counts as a match without a full-text hit.
MEMORY_SIMILARITY_THRESHOLD = _float("ENDUSERS_MEMORY_SIMILARITY", 0.35)
# SQLite fallback: how many of an end user's newest active memories are ranked in Python.
MEMORY_SEARCH_SCAN_LIMIT = _int("ENDUSERS_MEMORY_SCAN_LIMIT", 5000)
# LLM extraction: how many similar memories the decision step sees, and the model call's limits.
EXTRACTION_CANDIDATES = _int("ENDUSERS_EXTRACTION_CANDIDATES", 5)
EXTRACTION_MAX_FACTS = _int("ENDUSERS_EXTRACTION_MAX_FACTS", 5)
