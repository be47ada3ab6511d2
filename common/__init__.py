"""What every layer shares: the repository's defaults, the user-error type, command-line conventions."""
