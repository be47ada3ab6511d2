"""Research probes: one-off measurements behind the findings in docs/performance.md (op profiles, the int8 conv floor)."""
