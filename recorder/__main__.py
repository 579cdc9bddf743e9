"""Run the command line as ``python -m recorder``."""

from __future__ import annotations

from recorder.cli import main

__all__: list[str] = []

main()
