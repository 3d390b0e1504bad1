"""Recipes shipped with lsvr-lsnet (YAML package data)."""
