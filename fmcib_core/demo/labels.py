"""Task labels of the synthetic CT demo: label noise of Task 2 and survival of Task 3.

The labels are those of docs/method.md section 7. Task 2 ``malignancy`` is a lesion's latent
class flipped with probability ``_LABEL_NOISE``. Task 3 is a patient's (a case's) outcome: a death
time that depends on a risk score; ``survival`` is whether that patient is known alive at
``SURVIVAL_HORIZON_DAYS``.
"""

from __future__ import annotations

import math

import numpy as np

SURVIVAL_HORIZON_DAYS = 730  # Task 3 label: alive at 2 years
_LABEL_NOISE = 0.12  # Task 2 labels flipped at random


def _survival(rng: np.random.Generator, risk: float) -> tuple[int, int, int | None]:
    """(observed days, event, alive at 2 years or None when censored before) for a risk score.

    Death time is Weibull with shape 1.2 and a hazard proportional to exp(risk); follow-up ends
    uniformly between 1 and 6 years (administrative censoring).
    """
    death = 1400 * math.exp(-risk / 1.2) * rng.exponential() ** (1 / 1.2)
    follow_up = rng.uniform(365, 2190)
    days, event = max(1, round(min(death, follow_up))), int(death <= follow_up)
    alive = 1 if days > SURVIVAL_HORIZON_DAYS else (0 if event else None)
    return days, event, alive
