"""Recipes shipped with lsvr-mutualguide (YAML package data)."""
