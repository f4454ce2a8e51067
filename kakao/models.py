"""Kakao channel models (none yet)."""
