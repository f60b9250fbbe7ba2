"""Errors of the domain core; str() of each is one clear sentence for the person acting."""


class ControlError(Exception):
    """A refused lifecycle action (finalized month, lock held by another, missing note...)."""
