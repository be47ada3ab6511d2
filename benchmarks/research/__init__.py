"""Research probes: one-off measurements behind the README's findings (op profiles, the int8 conv floor)."""
