"""Thin adapters from the guard to web frameworks."""
