"""LR range test (Smith 2015, fastai's LR finder).

`python -m kaggle_tf.fit --config C --lr-find` trains fold 0's training
folds for a few steps while the learning rate grows exponentially from
`start_lr` to `end_lr`, and writes `<output_dir>/lr_find.png` (smoothed loss
vs LR, suggestion marked) and `lr_find.json`.
"""

import math
import os

import keras
import numpy as np

from kaggle_tf import layout
from kaggle_tf import losses
from kaggle_tf.data import pipeline
from kaggle_tf.training import image
from kaggle_tf.training import optimizers


class LRRangeTest(keras.callbacks.Callback):
    """Raises the LR geometrically per batch and records the loss."""

    def __init__(self, start_lr, end_lr, steps, beta=0.9, diverge=4.0):
        super().__init__()
        self.start_lr = start_lr
        self.factor = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
        self.beta = beta
        self.diverge = diverge
        self.lrs, self.losses, self.smoothed = [], [], []
        self._avg = 0.0
        self._best = math.inf

    def lr_for(self, step):
        return self.start_lr * self.factor ** step

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.lr_for(len(self.lrs)))

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        step = len(self.lrs)
        self.lrs.append(self.lr_for(step))
        self.losses.append(loss)
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta ** (step + 1))
        self.smoothed.append(smooth)
        self._best = min(self._best, smooth)
        if not math.isfinite(loss) or smooth > self.diverge * self._best:
            self.model.stop_training = True


def suggest(lrs, smoothed, skip_start=2, skip_end=1):
    """The LR of the steepest descent of the smoothed loss (log-LR axis)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(smoothed, dtype=np.float64)
    end = len(lrs) - skip_end if len(lrs) > skip_start + skip_end + 2 \
        else len(lrs)
    lrs, loss = lrs[skip_start:end], loss[skip_start:end]
    if len(lrs) < 3:
        return float(lrs[np.argmin(loss)]) if len(lrs) else None
    grad = np.gradient(loss, np.log(lrs))
    return float(lrs[int(np.argmin(grad))])


def run(cfg, start_lr=1e-7, end_lr=1.0, steps=None):
    """Runs the range test; returns {"lrs", "losses", "suggested_lr"}."""

    keras.utils.set_random_seed(cfg.seed)
    os.makedirs(cfg.output_dir, exist_ok=True)
    train_folds = list(range(1, cfg.data.folds))
    steps = steps or cfg.train.steps_per_epoch or 100
    model = image.build_model(cfg)
    model.compile(optimizer=optimizers.make_optimizer(cfg, start_lr, model),
                  loss=losses.build(cfg.loss),
                  jit_compile=cfg.train.jit_compile)
    ds = pipeline.make_dataset(cfg, train_folds, training=True,
                               batch_size=cfg.train.batch_size)
    test = LRRangeTest(start_lr, end_lr, steps)
    model.fit(pipeline.to_keras(ds, cfg), epochs=1, steps_per_epoch=steps,
              callbacks=[test], verbose=cfg.train.verbose)
    lr = suggest(test.lrs, test.smoothed)
    result = {"lrs": test.lrs, "losses": test.losses,
              "smoothed": test.smoothed, "suggested_lr": lr}
    layout.write_json(os.path.join(cfg.output_dir, "lr_find.json"), result)
    plot(result, os.path.join(cfg.output_dir, "lr_find.png"))
    print(f"suggested learning rate: {lr:.3g} "
          f"(plot: {os.path.join(cfg.output_dir, 'lr_find.png')})")
    return result


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lrs"], result["losses"], alpha=0.3, label="loss")
    ax.plot(result["lrs"], result["smoothed"], label="smoothed loss")
    if result["suggested_lr"]:
        ax.axvline(result["suggested_lr"], color="red", linestyle="--",
                   label=f"suggested {result['suggested_lr']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("LR range test")
    ax.legend()
    fig.tight_layout()
    tmp = f"{path[:-4]}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
