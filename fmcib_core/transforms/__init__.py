"""transforms layer of fmcib_core."""
