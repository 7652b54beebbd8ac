"""The web UI (``text3d ui`` / ``python app.py``): a Gradio app that runs ``text3d generate`` jobs one at a time.

``command`` holds the CLI verb (no Gradio import, so the rest of the CLI stays fast), ``app`` the Blocks layout
and launch, ``jobs`` the worker threads that run the pipeline, ``runs`` the output-root bookkeeping.
"""
