"""eval layer of fmcib_core."""
