"""``infermeter profile``: (being written)."""

from __future__ import annotations
