"""The error that means "the user's input is wrong" (exit code 2), as opposed to a failure of ours."""

from __future__ import annotations


class OptimizerInputError(Exception):
    """Bad input: a missing or unreadable model, an option value out of range, malformed calibration data.

    The message names the offending field or file and says why it is refused.
    """
