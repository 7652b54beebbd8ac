"""text3d: a text prompt (or posed reference images) in, a textured 3D asset out.

Importing the package is cheap and never imports optional backends (tiny-cuda-nn, nvdiffrast, Gradio).
"""

__version__ = "0.1.0"
