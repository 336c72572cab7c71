"""``infermeter implied``: (being written)."""

from __future__ import annotations
