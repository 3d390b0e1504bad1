"""Backbones shipped with lsvr-lsnet (Res2Net for the R2-101 rows)."""
