"""Reference evaluator for Core ML ML Programs: reads a saved ``.mlpackage`` and runs it with numpy.

``run(path, {"image": pixels})`` evaluates the program; ``load(path)`` returns a ``Program`` to
inspect (``op_types()``, ``max_rank()``, ``compute_precision()``) and run repeatedly.
"""
from .program import Program, ProgramError, UnsupportedOpError, load, run

__all__ = ["Program", "ProgramError", "UnsupportedOpError", "load", "run"]
