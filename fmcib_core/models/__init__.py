"""models layer of fmcib_core."""
