"""Procedural test objects, synthetic multi-view datasets and NeRF-synthetic dataset loading."""
