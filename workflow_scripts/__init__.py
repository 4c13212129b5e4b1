"""The scripts the rules run, their tested config helpers, and the ``fmcib`` command."""
