"""Widgets models (none yet)."""
