"""Realtime assistant models (none yet)."""
