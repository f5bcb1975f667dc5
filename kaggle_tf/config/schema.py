"""The config schema: typed dataclasses with defaults, one per section.

A recipe JSON names only what differs from these defaults. Field metadata
carries the checks (`choices`, `min`, `max`, `length`) that
`config.load.from_dict` applies with error messages naming the dotted key.
Choices that registries own (tasks, losses, encoders) are callables, asked
at validation time: this module imports no TensorFlow.
"""

import dataclasses
import importlib
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Optional



def task_names():
    """`task` choices: the competition plugins (`tfrecords_tools`)."""
    from tfrecords_tools import competitions

    return competitions.names()


def loss_names():
    """`loss.name` choices: the loss registry."""
    from kaggle_tf import losses

    return losses.names()


def encoder_names():
    """`model.encoder` choices: the encoder registry."""
    from kaggle_tf.models import encoders

    return encoders.names()


def arch_names():
    """`model.arch` choices: the architectures `models.build` knows."""
    return tuple(importlib.import_module(
        "kaggle_tf.models.build").ARCHITECTURES)


def _f(default=dataclasses.MISSING, factory=None, **checks):
    """A dataclass field whose metadata holds validation checks."""
    if factory is not None:
        return field(default_factory=factory, metadata=checks)
    return field(default=default, metadata=checks)


@dataclass
class DataConfig:
    """Where the data lives and how it is split.

    `raw_dir` holds the competition's files in Kaggle's layout;
    `records_dir` the TFRecord shards and `manifest.json`.
    """

    raw_dir: str = "data/raw"
    records_dir: str = "data/records"
    image_size: list = _f(factory=lambda: [256, 1600], length=2, item=int,
                          min=8)
    channels: int = _f(3, min=1)
    folds: int = _f(5, min=2)
    fold_strategy: str = _f(
        "auto",
        choices=("auto", "random", "stratified", "grouped", "multilabel"),
    )
    shard_size: int = _f(256, min=1)
    # DICOM tasks: [center, width] windows stacked as channels (empty = HU).
    windows: list = _f(factory=list, item=list)
    # rsna_lumbar: slices per series type.
    stack_slices: dict = _f(factory=lambda: {
        "sagittal_t1": 10, "sagittal_t2_stir": 10, "axial_t2": 20})
    # rsna_ich sequence model: maximum slices per series.
    max_series_length: int = _f(64, min=1)
    shuffle_buffer: int = _f(512, min=1)
    cache: bool = False
    # Pseudo-labelled records (`kaggle_tf.pseudo`) mixed into every
    # training fold, never into validation; `pseudo_weight` is their share
    # w of the training stream (null: their share by count). An epoch has
    # R / (1 - w) examples (R real; null w: R + P pseudo; w = 1: P), its
    # steps that // batch size unless `train.steps_per_epoch` is set; RSNA
    # ICH series: the sequence model's epoch is in series windows.
    pseudo_records: Optional[str] = None
    pseudo_weight: Optional[float] = _f(None, min=0.0, max=1.0)
    # train.strategy="multiworker": only the chief converts missing
    # records; the other workers wait this many seconds for its
    # manifest.json, then stop naming this key.
    records_wait_s: float = _f(3600.0, min=0.0)


@dataclass
class AugmentConfig:
    """On-device augmentation.

    `transforms` is a list of albumentations-style dicts, a path to an
    albumentations JSON (`A.to_dict` format), or null for none.
    `compose_geometric` samples consecutive geometric transforms (affine,
    grid, optical, elastic) once at their composed map; false samples
    after each, as albumentations does.
    """

    transforms: Any = None
    placement: str = _f("dataset", choices=("dataset", "model"))
    allow_cpu_fallback: bool = False
    compose_geometric: bool = True
    seed: Optional[int] = None


@dataclass
class SamplingConfig:
    """Sliding sample rate: fraction of non-empty-mask images per epoch.

    `schedule` is a list of rates, one per epoch (the last repeats), or null
    for the natural distribution. Stages may set their own `sample_rate`.
    """

    schedule: Optional[list] = _f(None, item=float, min=0.0, max=1.0)


@dataclass
class ModelConfig:
    """What `kaggle_tf.models.build` builds; keys are constructor args.

    Which keys each `arch` takes is `kaggle_tf.models.build.config_keys`;
    setting one that the arch does not take is an error.
    """

    arch: str = _f("unet", choices=arch_names)
    encoder: str = _f("resnet34", choices=encoder_names)
    encoder_weights: Optional[str] = None
    classes: int = _f(4, min=1)
    decoder_channels: list = _f(factory=lambda: [256, 128, 64, 32, 16],
                                item=int, min=1)
    decoder_attention: Optional[str] = _f(None, choices=(None, "scse"))
    aux_head: bool = False
    # classifier: "timm" = timm's own head for the encoder (whole timm
    # checkpoints load into it); series_classifier: "concat_pool" / "avg".
    head: str = _f("concat_pool", choices=("concat_pool", "avg", "timm"))
    dropout: float = _f(0.0, min=0.0, max=1.0)
    activation: str = _f("sigmoid", choices=("sigmoid", "softmax"))
    # series_classifier: input channels of each series' encoder, in input
    # order; null = rsna_lumbar's `data.stack_slices`.
    series_channels: Optional[list] = _f(None, item=int, min=1)
    shared_encoder: bool = False
    # sequence model (`SequenceModel` arguments)
    rnn: str = _f("lstm", choices=("lstm", "gru"))
    units: int = _f(128, min=1)
    num_layers: int = _f(2, min=1)
    bidirectional: bool = True
    # Add the slice classifier's logits to the output (the recurrent
    # layers learn a correction).
    residual: bool = True
    # The slice classifier's output_dir whose fold<K> checkpoints embed
    # the slices for fold K of the sequence model.
    embedding_model: Optional[str] = None
    # Uptraining: a run's output_dir (fold K starts from its fold K
    # checkpoint) or a .keras / .weights.h5 file (`training.warm_start`).
    init_from: Optional[str] = None
    # Weights that do not match `init_from` start from scratch (listed)
    # instead of failing.
    init_skip_mismatch: bool = False


# Old config keys -> their names now (read with a DeprecationWarning).
RENAMED = {
    "model.rnn_units": "model.units",
    "model.rnn_layers": "model.num_layers",
}


@dataclass
class LossConfig:
    """The training loss; `weights` are per-term for `combo`.

    Combo `weights` are (bce, dice, focal) as in the SIIM seed.
    """

    name: str = _f("combo", choices=loss_names)
    weights: list = _f(factory=lambda: [1.0, 1.0, 0.0], item=float, min=0.0)
    class_weights: Optional[list] = _f(None, item=float, min=0.0)
    from_logits: bool = True
    gamma: float = _f(2.0, min=0.0)
    alpha: Optional[float] = _f(None, min=0.0, max=1.0)
    smooth: float = _f(1.0, min=0.0)
    # None: the loss's own default (Lovasz: per image; Dice: per batch).
    per_image: Optional[bool] = None
    # RSNA lumbar: weight of the any-severe-spinal term in the loss.
    any_severe_weight: float = _f(0.0, min=0.0)


@dataclass
class OptimizerConfig:
    name: str = _f("adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    lr: float = _f(1e-3, min=0.0)
    weight_decay: float = _f(0.0, min=0.0)
    momentum: float = _f(0.9, min=0.0)
    clipnorm: Optional[float] = _f(None, min=0.0)
    encoder_lr_mult: float = _f(1.0, min=0.0)


@dataclass
class StageConfig:
    """One training stage (SIIM's uptraining is several)."""

    epochs: int = _f(1, min=1)
    lr: Optional[float] = _f(None, min=0.0)
    scheduler: str = _f("constant", choices=(
        "constant", "cosine", "cosine_restarts", "one_cycle",
        "reduce_on_plateau"))
    sample_rate: Optional[float] = _f(None, min=0.0, max=1.0)
    loss_weights: Optional[list] = _f(None, item=float, min=0.0)
    freeze_encoder: bool = False
    from_previous_best: bool = True
    min_lr: float = _f(0.0, min=0.0)
    restart_epochs: int = _f(1, min=1)
    patience: int = _f(2, min=1)
    factor: float = _f(0.5, min=0.0, max=1.0)


@dataclass
class ScheduleConfig:
    """Stages; empty means one constant stage of `train.epochs` epochs."""

    stages: list = _f(factory=list, item=StageConfig)


@dataclass
class TrainConfig:
    epochs: int = _f(10, min=1)
    batch_size: int = _f(8, min=1)
    steps_per_epoch: Optional[int] = _f(None, min=1)
    validation_steps: Optional[int] = _f(None, min=1)
    mixed_precision: Optional[str] = _f(
        None, choices=(None, "mixed_float16", "mixed_bfloat16"))
    strategy: str = _f("auto", choices=("auto", "default", "mirrored",
                                        "tpu", "multiworker"))
    # XLA: true, false or "auto" (Keras: on for GPU/TPU, off on CPU-only
    # machines, where it is slower).
    jit_compile: Any = _f("auto", choices=(True, False, "auto"))
    # Not under a TensorFlow strategy of several replicas (Keras cannot).
    grad_accum_steps: int = _f(1, min=1)
    ema: Optional[float] = _f(None, min=0.0, max=1.0)
    # BatchNorm statistics over the global batch (all-reduced across the
    # replicas) under a TensorFlow strategy of several replicas; false:
    # each replica normalises with its own share. JAX's DataParallel
    # computes them over the global batch already.
    sync_batchnorm: bool = False
    verbose: int = _f(1, choices=(0, 1, 2))
    # Bit-identical reruns on GPU (TF op determinism; slower).
    deterministic: bool = False


@dataclass
class CallbacksConfig:
    """Checkpointing by the Kaggle metric, logs, early stopping."""

    monitor: str = "val_kaggle_metric"
    # None: "max" when the task's Kaggle metric is higher-is-better.
    mode: Optional[str] = _f(None, choices=("max", "min"))
    top_k: int = _f(1, min=1)
    average_top_k: bool = False
    early_stopping_patience: Optional[int] = _f(None, min=1)
    tensorboard: bool = False
    backup: bool = True


@dataclass
class InferenceConfig:
    """TTA, ensembling and post-processing used by predict and export."""

    # A mode ("none", "hflip", "vflip", "d4") or a composition:
    # {"hflip": bool, "vflip": bool, "d4": bool, "scales": [s, ...],
    # "crops": [h, w]} (see `kaggle_tf.inference.tta`).
    tta: Any = "none"
    # How TTA passes merge: null = `merge`; HPA's crops take "max".
    tta_merge: Optional[str] = _f(None, choices=(None, "mean",
                                                 "geometric_mean", "max"))
    folds: Optional[list] = _f(None, item=int, min=0)
    checkpoints: str = _f("best", choices=("best", "top_k"))
    merge: str = _f("mean", choices=("mean", "geometric_mean", "max"))
    batch_size: int = _f(4, min=1)
    # Segmentation: per-class probability threshold and minimum area (px).
    thresholds: list = _f(factory=lambda: [0.5], item=float, min=0.0,
                          max=1.0)
    min_area: list = _f(factory=lambda: [0], item=int, min=0)
    # SIIM triplet: [top_score_threshold, min_area, bottom_score_threshold].
    triplet: Optional[list] = _f(None, length=3)
    # Steel: classifier config whose probability gates each class's mask.
    classifier_config: Optional[str] = None
    classifier_threshold: list = _f(factory=lambda: [0.5], item=float,
                                    min=0.0, max=1.0)


@dataclass
class PseudoConfig:
    """`kaggle_tf.pseudo`: test predictions -> pseudo-labelled records.

    `source` is the run (or ensemble) output_dir whose `test_probs.npz`
    is read (null: this config's `output_dir`); `records_dir` where the
    records go. Hard labels: `probs >= thresholds[c]`, an image kept when
    each class's probability is >= confidence or <= 1 - confidence; soft
    labels (classification): the probabilities. Series records (RSNA ICH)
    are labelled slice by slice and kept when every slice is confident.
    """

    source: Optional[str] = None
    records_dir: Optional[str] = None
    mode: str = _f("hard", choices=("hard", "soft"))
    thresholds: list = _f(factory=lambda: [0.5], item=float, min=0.0,
                          max=1.0)
    confidence: list = _f(factory=lambda: [0.5], item=float, min=0.5,
                          max=1.0)


@dataclass
class StackConfig:
    """A second-level model on out-of-fold probabilities (`kaggle_tf.stack`).

    `members` are the output_dirs of finished runs on the same records;
    `meta_features` per-image statistics of the records' images.
    """

    members: list = _f(factory=list, item=str)
    meta_features: list = _f(
        factory=lambda: ["brightness", "contrast", "correlation"], item=str,
        choices=("brightness", "contrast", "correlation"))
    learner: str = _f("lightgbm", choices=("lightgbm", "logistic"))
    inner_folds: int = _f(3, min=2)
    # Learner arguments (LGBMClassifier / LogisticRegression keywords).
    params: dict = _f(factory=dict)


@dataclass
class MemberConfig:
    """One experiment of an ensemble: a recipe (a path relative to the
    ensemble config's folder) and its weight in the blend."""

    config: str = ""
    weight: float = _f(1.0, min=0.0)


@dataclass
class EnsembleConfig:
    """Experiments blended by tune, predict and export.

    Each member predicts with its own folds, checkpoints, TTA, input size
    and normalization; probabilities are brought to the ensemble's
    `data.image_size` (the first member's unless set) and merged with the
    members' weights.
    """

    members: list = _f(factory=list, item=MemberConfig)
    merge: str = _f("mean", choices=("mean", "geometric_mean"))


@dataclass
class Config:
    task: str = _f("steel", choices=task_names)
    seed: int = 42
    output_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    # An ensemble of experiments (null: this config is one experiment).
    ensemble: Optional[EnsembleConfig] = None
    # Where the config came from (set by `load`, not by users).
    source: Optional[str] = None

    def to_dict(self):
        """The config as plain data, loadable again (`from_dict`, a JSON
        file): the `model` section holds only the keys its arch takes."""
        data = dataclasses.asdict(self)
        keys = importlib.import_module(
            "kaggle_tf.models.build").config_keys(self.model.arch)
        data["model"] = {k: v for k, v in data["model"].items() if k in keys}
        return data
