"""lsvr_lesa (importing it never imports torch)."""

__version__ = "0.1.0"
