"""Helpers for the test suite: seeded tiny random models that load through the real ``from_pretrained`` path."""
