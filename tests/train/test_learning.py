"""Learning checks: pretraining lowers its loss, and its features beat the random-init control.

Synthetic 24^3 patches in memory, the tiny backbone, the paper's loss and augmentations, AdamW
(the demo's optimiser): a lesion is a sphere at the patch centre in a strongly textured
background, and a negative is the same kind of background without it. The class of a lesion
(two classes) is its appearance: a homogeneous small sphere, or a larger one with a dark core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fmcib_core.eval.linear import fit_linear_eval
from fmcib_core.models import build_backbone
from fmcib_core.train.ssl import build_ssl_module
from fmcib_core.transforms.augment import ssl_view_transform

pytestmark = pytest.mark.slow

BACKBONE = "resnet10_w025"
SIZE = 24
BATCH = 16
EPOCHS = 10
AXIS = np.arange(SIZE) - SIZE // 2
DIST = np.sqrt(AXIS[:, None, None] ** 2 + AXIS[None, :, None] ** 2 + AXIS[None, None, :] ** 2)


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth random texture around a random tissue level (normalised units)."""
    field = ndimage.gaussian_filter(rng.normal(size=(SIZE,) * 3), 2.0)
    return 0.33 + rng.uniform(-0.02, 0.02) + 0.6 * field


def lesion(rng: np.random.Generator, label: int) -> np.ndarray:
    """A centred lesion of a class in a fresh background: (1, S, S, S) float32."""
    patch = background(rng)
    radius = rng.uniform(2.5, 3.5) if label == 0 else rng.uniform(4.5, 6.0)
    patch[DIST <= radius] = 0.45
    if label == 1:
        patch[DIST <= 0.5 * radius] = 0.36  # a dark (necrotic) core
    patch += rng.normal(0, 0.004, patch.shape)
    return np.clip(patch, 0, None)[None].astype(np.float32)


def lesions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return np.stack([lesion(rng, int(label)) for label in y]), y


def ssl_batches(patches: np.ndarray, seed: int):
    """One epoch of (p1, p2, n1, n2) batches: two views of each lesion and of a background."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    transform = ssl_view_transform()
    order = rng.permutation(len(patches))
    for start in range(0, len(order) - BATCH + 1, BATCH):
        views = [[], [], [], []]
        for i in order[start : start + BATCH]:
            negative = np.clip(background(rng), 0, None)[None].astype(np.float32)
            for k, source in enumerate((patches[i], patches[i], negative, negative)):
                views[k].append(transform(source))
        yield [torch.stack(v) for v in views]


@pytest.fixture(scope="module")
def pretrained():
    """The SSL module after EPOCHS epochs on 96 unlabelled lesions, and its per-epoch losses."""
    torch.manual_seed(0)
    unlabelled, _ = lesions(96, seed=100)
    steps = EPOCHS * (len(unlabelled) // BATCH)
    ssl = build_ssl_module(BACKBONE, lr=2e-3, optimizer="adamw", warmup_steps=5, total_steps=steps)
    parts = ssl.configure_optimizers()
    optimizer, scheduler = parts["optimizer"], parts["lr_scheduler"]["scheduler"]
    epoch_losses = []
    ssl.train()
    for epoch in range(EPOCHS):
        losses = []
        for batch in ssl_batches(unlabelled, seed=epoch):
            loss = ssl.compute_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        epoch_losses.append(float(np.mean(losses)))
    return ssl, epoch_losses


def test_pretraining_lowers_the_mean_loss_of_the_last_epoch(pretrained) -> None:
    _, epoch_losses = pretrained
    assert epoch_losses[-1] <= 0.8 * epoch_losses[0], epoch_losses


def _features(backbone: torch.nn.Module, patches: np.ndarray) -> np.ndarray:
    backbone.eval()
    with torch.inference_mode():
        return backbone(torch.from_numpy(patches)).numpy()


def test_a_linear_probe_on_ssl_features_beats_the_random_init_control(pretrained) -> None:
    ssl, _ = pretrained
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        control = build_backbone(BACKBONE)  # default initialisation, seeded, untrained
    splits = [lesions(n, seed) for n, seed in ((40, 1), (40, 2), (200, 3))]
    scores = {}
    for name, backbone in (("ssl", ssl.backbone), ("random-init", control)):
        (Xtr, ytr), (Xv, yv), (Xte, yte) = [(_features(backbone, p), y) for p, y in splits]
        result = fit_linear_eval((Xtr, ytr), (Xv, yv), (Xte, yte), task=2, n_trials=10, seed=0,
                                 n_bootstrap=20)  # fmt: skip
        scores[name] = result.test_metrics["roc_auc"].value
    assert scores["ssl"] > scores["random-init"], scores
