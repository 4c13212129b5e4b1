"""losses layer of fmcib_core."""
