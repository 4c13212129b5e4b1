"""optim layer of fmcib_core."""
