"""data layer of fmcib_core."""
