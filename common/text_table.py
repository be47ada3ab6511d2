"""Plain-text tables for the command-line tools: a header, a dashed rule, aligned columns."""
from __future__ import annotations


def text_table(header: list[str], rows: list[list[str]], right_from: int | None = None) -> str:
    """Columns padded to their widest cell; columns from index ``right_from`` on are right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = len(header) if right_from is None else right_from

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i >= right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join(line(r) for r in [header, ["-" * w for w in widths], *rows])
