"""The ``text3d ui`` verb: its arguments. Gradio (seconds to import) is imported only when the verb runs."""

from __future__ import annotations

import argparse
import socket

from text3d.app.arguments import path_argument
from text3d.app.presets import INTERACTIVE_GPU_PRESET, TOY_PRESET, cuda_available
from text3d.app.schema import Text3DConfig
from text3d.config import field_range
from text3d.errors import UserError
from text3d.io import os_reason


def add_ui_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ui",
        help="serve the web UI (Gradio): prompt in, live progress, the textured model out",
        description="Serve a web UI that runs text3d generate jobs one at a time (the rest wait in a bounded "
        "queue), with live progress and previews, Cancel, the 3D model, downloads and the past runs in "
        "--output-root. KEY=VALUE overrides apply to every job, before the form's values.",
    )
    p.add_argument("--host", help="address to listen on (default: 127.0.0.1, or $GRADIO_SERVER_NAME); "
                   "0.0.0.0 serves the whole network")
    p.add_argument("--port", type=int, help="port (default: 7860, or $GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--auth", metavar="USER:PASS", help="require this login")
    p.add_argument("--output-root", type=path_argument,
                   help="where runs are written and listed; the only folder the UI serves files from "
                   "(default: outputs, as for text3d generate)")
    p.add_argument("--preset", help=f"preset (a shipped preset's name) selected at first (default: "
                   f"{INTERACTIVE_GPU_PRESET} with CUDA or --model, else {TOY_PRESET}, the bundled toy model)")
    p.add_argument("--model", help="diffusers model id or local folder for every job (sets guide.sds.model.model)")
    p.add_argument("--max-queue", type=int, default=4, help="jobs that may wait behind the running one (default: 4)")
    p.add_argument("--max-steps", type=int,
                   help=f"most coarse steps a job may ask for (default: {GPU_MAX_STEPS} with CUDA, {CPU_MAX_STEPS} "
                   "on a CPU)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every job")
    return p


GPU_MAX_STEPS = 10_000
CPU_MAX_STEPS = 2_000


def default_max_steps() -> int:
    """The web UI's cap on a job's coarse steps when ``--max-steps`` is not given: the SD preset's 10k on a GPU,
    minutes of work on a CPU."""
    return GPU_MAX_STEPS if cuda_available() else CPU_MAX_STEPS


def check_port(host: str | None, port: int | None) -> None:
    """A one-line UserError for a ``--port`` the server could not listen on (out of range, or in use)."""
    if port is None:
        return
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET6 if host and ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host or "127.0.0.1", port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on {host or '127.0.0.1'}:{port} ({os_reason(e)}); "
                            "choose another --port") from None


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` as Gradio's ``auth`` tuple (the password may contain colons)."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth takes USER:PASS")
    return user, password


def cmd_ui(args: argparse.Namespace) -> int:
    # Check what is cheap to check before the slow Gradio import.
    for o in args.overrides:
        if "=" not in o:
            raise UserError(f"unexpected argument '{o}': overrides take the form KEY=VALUE")
    if args.max_queue < 1:
        raise UserError("--max-queue must be >= 1")
    steps = field_range(Text3DConfig, "coarse.max_steps")
    if args.max_steps is not None and not (args.max_steps >= 1 and steps.contains(args.max_steps)):
        raise UserError(f"--max-steps must be >= 1 and {steps}, got {args.max_steps}")
    parse_auth(args.auth)
    check_port(args.host, args.port)
    from text3d.ui.app import launch  # Gradio: only now

    launch(args)
    return 0
