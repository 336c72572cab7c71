"""``infermeter calibrate``: (being written)."""

from __future__ import annotations
