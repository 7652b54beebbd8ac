"""Gradio entry point: ``python app.py [OPTIONS]`` serves the text3d web UI, the same as ``text3d ui [OPTIONS]``."""

import sys

from text3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["ui", *sys.argv[1:]]))
