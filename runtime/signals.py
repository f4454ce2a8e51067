"""Signals other apps listen to; sent on commit, so listeners see stored rows."""

from django.dispatch import Signal

# turn_stored(turn): a user's message was stored (before any answer).
turn_stored = Signal()
# turn_finished(turn): a turn reached a final status (completed, failed, interrupted, stored).
turn_finished = Signal()
