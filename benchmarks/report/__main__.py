"""``python -m benchmarks.report`` (or ``python benchmarks/report``): see benchmarks/report/cli.py."""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a folder: the repository root replaces this folder on the path
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from benchmarks.report.cli import main  # noqa: E402

sys.exit(main())
