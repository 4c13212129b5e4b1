"""The package version, written only here (pyproject.toml reads it), and the versions of its
environment for result files."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

__version__ = "0.1.0"


def software_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Python's, this package's and each installed distribution's version (None if absent)."""
    versions = {"python": platform.python_version(), "fmcib_core": __version__}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
