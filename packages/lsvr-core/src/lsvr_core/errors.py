"""Errors raised for user mistakes; the CLI prints their message and exits with :attr:`exit_code`."""

from __future__ import annotations


class LsvrError(Exception):
    """Base of lsvr's user-facing errors. The message is complete: no traceback is shown."""

    exit_code = 1


class ConfigError(LsvrError):
    """A config file, override or value is invalid (exit code 2)."""

    exit_code = 2


class PluginError(LsvrError):
    """A plugin failed to load, or two plugins registered the same component (exit code 2)."""

    exit_code = 2


class DataError(LsvrError):
    """Input data is missing or malformed; the message names the file and the annotation (exit code 2)."""

    exit_code = 2


class ConversionError(LsvrError):
    """A checkpoint cannot be converted: the message lists every unmapped or mis-shaped key (exit code 2)."""

    exit_code = 2


def user_message(err: BaseException) -> str:
    """The message to show for ``err``: a DataLoader worker's re-raised error ("Caught DataError in DataLoader
    worker process 0. Original Traceback ...") is cut back to the original one-line message."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(err).__module__}.{type(err).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return text
