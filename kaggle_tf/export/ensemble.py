"""SavedModel of an ensemble of experiments: every member in one graph.

    image_bytes (B,) string
      -> per member: decode at its input size -> its TTA-wrapped fold
         ensemble (`inference.predict.ensemble_model`) -> probabilities
         resized to the ensemble's `data.image_size`
      -> weighted blend (`ensemble.merge`, `inference.ensemble.weights`)
      -> post-processing once (`export.images.ServingGraph.finish`)

Signatures as `export.images`: `serving_default` (`image_bytes`) and
`predict_images` (`images` at the ensemble's `data.image_size`, resized
to each member's size in the graph). `serving_default` decodes for each
member as its own data pipeline does, so it equals
`kaggle_tf.predict` on an ensemble config.

A blend of series models (RSNA ICH `model.arch="sequence"`) gets the
signatures of `export.sequence` (`serving_default(hu, mask)`,
`predict_series(images, mask)`), each member windowing the HU with its
own `data.image_size` and `data.windows`. Image and series members
together cannot be one SavedModel (a config error naming the member).
"""

import os

import tensorflow as tf

from kaggle_tf import config as config_lib
from kaggle_tf import tasks
from kaggle_tf.export import images as images_lib
from kaggle_tf.export import saved_model
from kaggle_tf.export import sequence
from kaggle_tf.inference import ensemble as ensemble_lib
from kaggle_tf.inference import predict as predict_lib
from kaggle_tf.models.build import family


def _size(model, cfg):
    shape = model.input_shape
    if None in shape[1:3]:
        return tuple(int(v) for v in cfg.data.image_size), shape[-1]
    return (int(shape[1]), int(shape[2])), shape[-1]


class BlendGraph(images_lib.ServingGraph):
    """The members' models, their weights and one post-processing."""

    def __init__(self, cfg, members, weights, params, classifier=None,
                 classifier_size=None):
        super().__init__(cfg, members[0][0], params, classifier)
        self.members = members            # [(model, (h, w), channels)]
        self.weights = [float(w) / float(sum(weights)) for w in weights]
        self.geometric = cfg.ensemble.merge == "geometric_mean"
        self.size = tuple(int(v) for v in cfg.data.image_size)
        self.classifier_size = classifier_size

    @property
    def variables(self):
        models = [m for m, _, _ in self.members] + (
            [self.classifier] if self.classifier else [])
        return [v.value for m in models for v in m.variables]

    def blend(self, images_at):
        """`images_at((h, w), channels)` -> the blended probabilities."""
        total = None
        for (model, size, c), w in zip(self.members, self.weights):
            if w == 0:
                continue
            p = tf.cast(model(images_at(size, c), training=False),
                        tf.float32)
            if self.segmentation and tuple(p.shape[1:3]) != self.size:
                p = tf.image.resize(p, self.size, method="bilinear")
            if self.geometric:
                p = tf.math.log(tf.maximum(p, 1e-7))
            total = w * p if total is None else total + w * p
        return tf.exp(total) if self.geometric else total

    def outputs_from(self, images_at):
        probs = self.blend(images_at)
        clf = (images_at(*self.classifier_size) if self.classifier
               is not None else None)
        return self.finish(probs, clf)


def families(members_cfg):
    """The model family shared by every member ("image" or "series").

    Raises:
        ConfigError: members of both families (the first series one named).
    """
    kinds = [family(m.model.arch) for m, _ in members_cfg]
    if len(set(kinds)) > 1:
        i = kinds.index("series")
        raise config_lib.ConfigError(
            f"`ensemble.members[{i}]` ({members_cfg[i][0].source}): a blend "
            "of image and series models cannot be one SavedModel (their "
            "inputs differ: encoded images vs HU series); export each, or "
            "blend them with predict")
    return kinds[0]


def build_graph(cfg, tta=None):
    """The `BlendGraph` of an ensemble config (all members loaded)."""
    members_cfg = config_lib.members(cfg)
    if families(members_cfg) != "image":
        raise config_lib.ConfigError(
            "a blend of series models has no image graph; "
            "`export` writes it with `series_members`")
    weights = ensemble_lib.weights(cfg, members_cfg)
    members = []
    for (member, _), w in zip(members_cfg, weights):
        if w == 0:
            continue
        model = predict_lib.Predictor(member, tta).model
        members.append((model, *_size(model, member)))
    weights = [w for w in weights if w != 0]
    classifier, clf_size = None, None
    clf_cfg = (predict_lib.classifier_config(cfg)
               if tasks.get(cfg.task).predicts_masks(cfg)
               else None)
    if clf_cfg is not None:
        classifier = predict_lib.ensemble_model(
            clf_cfg, predict_lib.checkpoint_paths(clf_cfg),
            clf_cfg.inference.tta)
        clf_size = _size(classifier, clf_cfg)
    return BlendGraph(cfg, members, weights,
                      predict_lib.load_postprocess(cfg), classifier, clf_size)


def series_members(cfg, tta=None):
    """The members of a blend of series models, as `export.sequence`
    `SeriesMember`s (weight-0 members left out)."""
    if tta not in (None, "none"):
        raise ValueError("--tta must be 'none' for model.arch="
                         f"'sequence'. Received: {tta!r}")
    members_cfg = config_lib.members(cfg)
    weights = ensemble_lib.weights(cfg, members_cfg)
    return [sequence.member_of(member, weight=w)
            for (member, _), w in zip(members_cfg, weights) if w != 0]


def export(cfg, out_dir, tta=None, folds=None, version=None):
    """Writes the blend's SavedModel (the arguments, return value and
    errors of `export.run.export`; `folds` is not taken)."""
    if folds is not None:
        raise config_lib.ConfigError(
            "--folds does not apply to an ensemble (each member exports "
            "its own folds)")
    version = version or saved_model.next_version(out_dir)
    if tf.io.gfile.exists(os.path.join(out_dir, str(version))):
        raise FileExistsError(f"{os.path.join(out_dir, str(version))} "
                              "exists; versions are immutable")
    if families(config_lib.members(cfg)) == "series":
        return sequence.save(series_members(cfg, tta), out_dir, version,
                             tasks.get(cfg.task),
                             geometric=cfg.ensemble.merge == "geometric_mean")
    graph = build_graph(cfg, tta)
    h, w = graph.size
    c = graph.members[0][2]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name=saved_model.INPUT_BYTES)])
    def serving_default(image_bytes):
        return graph.outputs_from(
            lambda size, ch: saved_model.decode(image_bytes, size, ch))

    @tf.function(input_signature=[tf.TensorSpec(
        [None, h, w, c], tf.float32, name=saved_model.INPUT_IMAGES)])
    def predict_images(images):
        def at(size, ch):
            if tuple(size) == (h, w):
                return images
            return tf.image.resize(images, size, method="bilinear")
        return graph.outputs_from(at)

    return saved_model.save(graph.variables,
                            {"serving_default": serving_default,
                             "predict_images": predict_images},
                            out_dir, version)
