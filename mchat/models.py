"""Mattermost (Mchat) models (none yet)."""
