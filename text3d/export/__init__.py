"""Turning fields into files people download."""
