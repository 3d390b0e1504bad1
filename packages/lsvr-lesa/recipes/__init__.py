"""Recipes shipped with lsvr-lesa (YAML package data)."""
