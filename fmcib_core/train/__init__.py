"""train layer of fmcib_core."""
