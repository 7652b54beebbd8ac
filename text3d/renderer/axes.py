"""The world's axes and those of mesh files.

The world is z-up with an object's front (what the camera at azimuth 0 sees) facing +x (see
:func:`text3d.renderer.cameras.spherical_cameras`). glTF 2.0 (§3.4) is +Y up with the front facing +Z, and the
usual OBJ importers (Blender with its default "Y up, −Z forward", Unity, Unreal, three.js) read OBJ in the same axes.
So a file's (x, y, z) is the world's (y, z, x): a rotation (a cyclic swap of the axes, no mirror).
"""

from __future__ import annotations

import numpy as np

WORLD_TO_FILE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
"""Rows: a file's x, y, z axes in world coordinates (file = WORLD_TO_FILE @ world)."""


def world_to_file(points: np.ndarray) -> np.ndarray:
    """``[N, 3]`` points or directions in the world's axes -> a file's (glTF's) axes."""
    return np.asarray(points, np.float64) @ WORLD_TO_FILE.T


def file_to_world(points: np.ndarray) -> np.ndarray:
    """``[N, 3]`` points or directions in a file's (glTF's) axes -> the world's axes."""
    return np.asarray(points, np.float64) @ WORLD_TO_FILE
