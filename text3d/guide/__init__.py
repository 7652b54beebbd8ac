"""Guides score renders: ``step(renders, cameras, step) -> {"loss_<name>": scalar}``."""
