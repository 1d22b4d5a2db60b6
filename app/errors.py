"""User-facing errors of the app layer.

Every error a user can cause (bad file, bad config, unknown preset, unwritable directory, broken
checkpoint) is one of these, or :class:`datasets.errors.DataError`; the CLI prints it as one line
and exits non-zero (the traceback only with ``--debug``).
"""

from __future__ import annotations

__all__ = ["FieldsAppError", "ConfigError", "CheckpointError", "PresetError"]


class FieldsAppError(Exception):
    """Base class of errors that are the user's to fix; the message names the file and problem."""


class ConfigError(FieldsAppError):
    """A configuration file or value is wrong."""


class CheckpointError(FieldsAppError):
    """A run directory or checkpoint is missing, truncated or inconsistent."""


class PresetError(FieldsAppError):
    """An unknown preset name."""
