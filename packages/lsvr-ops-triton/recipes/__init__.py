"""Recipes shipped with lsvr-ops-triton (YAML package data)."""
