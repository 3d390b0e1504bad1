"""Recipes shipped with lsvr-data (YAML package data)."""
