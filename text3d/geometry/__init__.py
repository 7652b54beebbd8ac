"""Explicit surface geometry: procedural tetrahedral grids, differentiable marching tetrahedra (DMTet) and mesh losses."""
