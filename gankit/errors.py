"""Errors a user can cause, and the one line the CLI prints for each.

Every exception a user can trigger by what they wrote (a config, a path, a plugin
name) derives from :class:`GankitError`. Its message is one line that says what is
wrong and how to fix it; the CLI prints it and exits with status 2.
"""

from __future__ import annotations


class GankitError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line to show them."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class ConfigError(GankitError):
    """The configuration is invalid: a wrong key, value or plugin name."""


class PluginError(GankitError):
    """A plugin is missing, broken, or clashes with another plugin."""


class BackendUnavailable(PluginError):
    """The selected backend's framework is not installed."""


class DataError(GankitError):
    """A data file or dataset is unreadable or does not fit the experiment."""


class CheckpointError(GankitError):
    """A checkpoint is corrupt, truncated or does not match the model."""


class TrainingError(GankitError):
    """Training cannot continue (for example a NaN loss)."""


class TrainingInterrupted(TrainingError):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM after saving a checkpoint; ``--resume``
    continues it. Exit status 128 + the signal's number (130, 143), as a shell reports it."""

    def __init__(self, message: str, hint: str | None = None, signum: int = 2):
        super().__init__(message, hint)
        self.exit_code = 128 + int(signum)
