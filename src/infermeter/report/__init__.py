"""Rendering and export of results: console tables, JSON/CSV."""
