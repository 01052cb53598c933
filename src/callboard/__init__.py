"""Callboard: a programmable voice server."""
