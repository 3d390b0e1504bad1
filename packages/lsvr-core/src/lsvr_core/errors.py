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
