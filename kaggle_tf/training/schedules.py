"""Learning-rate schedules of a training stage, as plain functions of time.

Each stage of `schedule.stages` names a scheduler; `lr_at(stage, base_lr,
epoch_float, total_epochs)` gives the learning rate at a fractional epoch.
`reduce_on_plateau` is not a function of time: it is handled by a Keras
callback and starts at `base_lr`.
"""

import math

SCHEDULERS = ("constant", "cosine", "cosine_restarts", "one_cycle",
              "reduce_on_plateau")


def lr_at(scheduler, base_lr, t, total, min_lr=0.0, restart_epochs=1):
    """The learning rate at fractional epoch `t` of a stage of `total` epochs.

    Args:
        scheduler: one of `SCHEDULERS`.
        base_lr: the stage's peak learning rate.
        t: epochs done so far in the stage, fractional (0 <= t <= total).
        total: the stage's epochs.
        min_lr: floor of the cosine schedules.
        restart_epochs: period of `cosine_restarts` in epochs (SGDR, T_mult=1).

    Returns:
        float learning rate.

    >>> lr_at("cosine", 1e-4, 0.0, 10)
    0.0001
    >>> round(lr_at("cosine", 1e-4, 5.0, 10), 12)
    5e-05
    """
    if scheduler in ("constant", "reduce_on_plateau"):
        return base_lr
    if scheduler == "cosine":
        frac = min(max(t / max(total, 1e-12), 0.0), 1.0)
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * frac))
    if scheduler == "cosine_restarts":
        period = float(restart_epochs)
        frac = (t % period) / period
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * frac))
    if scheduler == "one_cycle":
        # Linear warm-up from base/25 over the first 30%, cosine down to
        # base/1e4 (fastai's defaults: div=25, final_div=1e4, pct_start=0.3).
        frac = min(max(t / max(total, 1e-12), 0.0), 1.0)
        start, end, pct = base_lr / 25.0, base_lr / 1e4, 0.3
        if frac < pct:
            return start + (base_lr - start) * frac / pct
        frac = (frac - pct) / (1 - pct)
        return end + 0.5 * (base_lr - end) * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown scheduler {scheduler!r}. Choices: "
                     f"{', '.join(SCHEDULERS)}")
