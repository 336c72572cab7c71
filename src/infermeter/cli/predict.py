"""``infermeter predict``: (being written)."""

from __future__ import annotations
