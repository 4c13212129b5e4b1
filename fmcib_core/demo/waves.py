"""Random smooth fields and directions shared by the phantom's anatomy and its lesions.

Plane-wave sums give the bowel/fat pattern, the lung parenchyma and lesion texture; random unit
vectors and points in a disc or ball give lesion lobes, spikes and candidate centres. Every
function that takes a generator draws from it in a fixed order, so the data stay reproducible.
"""

from __future__ import annotations

import numpy as np


def _waves(spec: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean of plane waves sin(k . p + phase): a smooth, roughly isotropic field in [-1, 1].

    ``spec`` is (terms, 4): wave vector (rad/mm) and phase. The in-plane and z phases are
    combined with the angle-sum identity so that a grid costs a few passes, not one sine per voxel.
    """
    out = np.float32(0.0)
    for kx, ky, kz, phase in spec.tolist():
        plane, along = kx * x + ky * y, kz * z + phase
        out = out + np.sin(plane) * np.cos(along) + np.cos(plane) * np.sin(along)
    return (out / len(spec)).astype(np.float32)


def _random_waves(rng: np.random.Generator, terms: int, wavelength: np.ndarray) -> np.ndarray:
    """``terms`` plane waves with random directions, wavelengths in ``wavelength`` (mm)."""
    k = _unit_vectors(rng, terms) * (2 * np.pi / rng.uniform(*wavelength, (terms, 1)))
    return np.concatenate([k, rng.uniform(0, 2 * np.pi, (terms, 1))], axis=1).astype(np.float32)


def _in_disc(rng: np.random.Generator, n: int, dims: int = 2) -> np.ndarray:
    """``n`` points uniform in the unit disc (dims 2) or ball (dims 3), shape (dims, n)."""
    p = _unit_vectors(rng, n, dims).T
    return p * rng.random(n) ** (1 / dims)


def _unit_vectors(rng: np.random.Generator, n: int, dims: int = 3) -> np.ndarray:
    """``n`` random directions, shape (n, dims)."""
    p = rng.normal(size=(n, dims))
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
