"""The ops_triton plugin: registers its components with lsvr (torch-free)."""

from __future__ import annotations

from lsvr_core.hookspecs import hookimpl  # noqa: F401
