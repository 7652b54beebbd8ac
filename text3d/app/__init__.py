"""The application layer: what the command line, batch runs and the web UI share, and nothing of theirs.

- :mod:`~text3d.app.schema` — the assembled config of a run, one section per module.
- :mod:`~text3d.app.presets` — presets shipped in the package (or any YAML file), config assembly
  (defaults <- preset <- options <- KEY=VALUE), and which preset a run gets on a GPU or a CPU.
- :mod:`~text3d.app.run_dir` — run directories: names, the saved config, resume rules, the run's log.
- :mod:`~text3d.app.chain` — the stage chain as data: coarse -> geometry -> texture, each built by one factory.
- :mod:`~text3d.app.jobs` — the jobs: reconstruct, generate, export.
- :mod:`~text3d.app.progress` — the progress bar of a run.
- :mod:`~text3d.app.prompt_files`, :mod:`~text3d.app.batch` — prompt files; batch runs with a manifest.
"""
