"""Recipes shipped with lsvr-core (YAML package data)."""
