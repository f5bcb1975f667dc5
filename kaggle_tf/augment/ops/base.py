"""Ops, containers and the two ways of running them on a batch.

A transform tree is made of leaf `Op`s and containers (`Compose`,
`Sequential`, `OneOf`, `SomeOf`, `OneOrOther`). Running it on a batch
`{"images": (batch, height, width, channels), "masks": (batch, height,
width, classes)}` takes two steps, as in Keras' augmentation layers:

1. `draw`: every random parameter of every node is drawn once, for the
   whole batch, from one stateless seed (per-sample values, leading batch
   dimension), including each node's gate `uniform < p`.
2. `forward`: the parameters are applied. Vectorized (`active` has shape
   `(batch,)`): each op transforms the whole batch and `tf.where` keeps the
   result for active samples only; a `tf.cond` skips an op no sample needs.
   Per sample (`active` is a scalar, the batch has size 1): `tf.cond` runs
   only the ops a sample needs. `run(..., per_sample=True)` maps that over
   the batch; it is the faster choice on a CPU (inside `tf.data`), the
   vectorized one on accelerators. Both give the same output for a seed.

Example:

>>> tree = Compose([Flip("horizontal", p=0.5)], p=1.0)
>>> out = run(tree, {"images": images}, seed, per_sample=False)
"""

import tensorflow as tf

from kaggle_tf.augment.ops import chain as warp_chain
from kaggle_tf.augment.ops import rng


def scalar_fill(fill):
    """Whether `fill` is one number for every channel (a number or a
    one-element list)."""
    if isinstance(fill, (list, tuple)):
        return len(fill) == 1 and scalar_fill(fill[0])
    return isinstance(fill, (int, float)) and not isinstance(fill, bool)


def check_probability(p, where):
    """Returns `p` as a float in [0, 1]; raises ValueError naming `where`."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) \
            or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: `p` must be a number in [0, 1]. "
                         f"Received: p={p!r}")
    return float(p)


class Node:
    """A node of a transform tree (an op or a container)."""

    name = "node"

    def __init__(self, p=1.0):
        self.p = check_probability(p, self.name)
        self.index = 0

    # Every node has a unique index (pre-order), used to fold the seed.
    def assign_indices(self, start=0):
        self.index = start
        return start + 1

    def output_size(self, height, width):
        return height, width

    def changes_size(self):
        return False

    @property
    def xla_safe(self):
        return True

    @property
    def packs_masks(self):
        """Whether the node handles masks packed a bit per class (see
        `packing`): it only moves them with nearest sampling, flips them,
        fills them with 0 / 1 or leaves them alone."""
        return False

    @property
    def channel_uniform(self):
        """Whether the node treats every image channel alike: the same
        arithmetic on each channel with the same drawn values, fills equal
        in every channel, nothing computed across channels. An image whose
        channels are all equal (grayscale stored as RGB) then gives the
        same result transformed on one channel and repeated (`Runner`)."""
        return False

    def leaves(self):
        return [self]


class Op(Node):
    """A leaf transform: `sample` draws per-sample parameters, `apply`
    transforms a batch with them.

    Subclasses implement:
        sample(seed, batch_size, height, width) -> dict of tensors with a
            leading batch dimension (may be empty).
        apply(data, params) -> data, for any batch size (1 in per-sample
            mode); `data` holds "images" and maybe "masks".
    """

    name = "op"

    def __init__(self, p=0.5):
        super().__init__(p)

    def sample(self, seed, batch_size, height, width):
        del seed, batch_size, height, width
        return {}

    def apply(self, data, params):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class Container(Node):
    """A node with children; `transforms` is a list of nodes."""

    def __init__(self, transforms, p=1.0):
        super().__init__(p)
        transforms = list(transforms)
        for t in transforms:
            if not isinstance(t, Node):
                raise ValueError(f"{self.name}: every transform must be an "
                                 f"op or a container. Received: {t!r}")
        self.transforms = transforms

    def assign_indices(self, start=0):
        self.index = start
        start += 1
        for t in self.transforms:
            start = t.assign_indices(start)
        return start

    @property
    def xla_safe(self):
        return all(t.xla_safe for t in self.transforms)

    @property
    def packs_masks(self):
        return all(t.packs_masks for t in self.transforms)

    @property
    def channel_uniform(self):
        return all(t.channel_uniform for t in self.transforms)

    def leaves(self):
        return [leaf for t in self.transforms for leaf in t.leaves()]

    def changes_size(self):
        return any(t.changes_size() for t in self.transforms)

    def __repr__(self):
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}], p={self.p})"


class Compose(Container):
    """Applies every child in order (each with its own `p`), all with
    probability `p`."""

    name = "Compose"

    def output_size(self, height, width):
        for t in self.transforms:
            height, width = t.output_size(height, width)
        return height, width


class Sequential(Compose):
    """Same as `Compose`; albumentations' name for a nested sequence."""

    name = "Sequential"


class OneOf(Container):
    """With probability `p`, applies one child chosen with probability
    proportional to the children's `p` (the chosen one is always applied).
    """

    name = "OneOf"

    def __init__(self, transforms, p=0.5):
        super().__init__(transforms, p)
        if not self.transforms:
            raise ValueError("OneOf: needs at least one transform.")
        self.weights = [t.p for t in self.transforms]
        if sum(self.weights) <= 0:
            self.weights = [1.0] * len(self.transforms)


class SomeOf(Container):
    """With probability `p`, picks `n` distinct children uniformly and
    applies them in their listed order, each with its own `p`."""

    name = "SomeOf"

    def __init__(self, transforms, n=1, replace=False, p=1.0):
        super().__init__(transforms, p)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"SomeOf: `n` must be an integer >= 0. "
                             f"Received: n={n!r}")
        if replace and n > 1:
            raise ValueError(
                "SomeOf: `replace=True` with n > 1 is not supported (a "
                "transform picked twice would need two parameter draws). "
                f"Received: n={n}, replace=True")
        self.n = min(n, len(self.transforms))
        self.replace = replace


class OneOrOther(Container):
    """Applies the first child with probability `p`, else the last."""

    name = "OneOrOther"

    def __init__(self, transforms, p=0.5):
        super().__init__(transforms, p)
        if len(self.transforms) != 2:
            raise ValueError("OneOrOther: needs exactly two transforms. "
                             f"Received: {len(self.transforms)}")


# --- draw --------------------------------------------------------------


def draw(node, seed, batch_size, height, width):
    """Draws all parameters of `node` and its children for one batch."""
    node_seed = rng.fold(seed, node.index)
    params = {"gate": rng.bernoulli(node_seed, "gate", [batch_size],
                                    node.p)}
    if isinstance(node, OneOrOther):
        # Always applies one branch; `p` picks the first.
        params["branch"] = params["gate"]
        params["gate"] = tf.ones([batch_size], tf.bool)
    if isinstance(node, Op):
        params["args"] = node.sample(node_seed, batch_size, height, width)
        return params
    children = []
    for t in node.transforms:
        children.append(draw(t, seed, batch_size, height, width))
        if isinstance(node, Compose):
            height, width = t.output_size(height, width)
    params["children"] = children
    if isinstance(node, OneOf):
        params["choice"] = rng.categorical(node_seed, "choice",
                                           [batch_size], node.weights)
    elif isinstance(node, SomeOf):
        k = len(node.transforms)
        keys = rng.uniform(node_seed, "pick", [batch_size, k])
        # A child is picked when fewer than n others have smaller keys.
        rank = tf.reduce_sum(
            tf.cast(keys[:, None, :] < keys[:, :, None], tf.int32), axis=-1)
        params["picked"] = rank < node.n
    return params


# --- forward -----------------------------------------------------------


def _per_sample(active):
    return active.shape.rank == 0


def _flag(t, active):
    """A per-sample flag as the executor needs it (scalar per sample)."""
    return t[0] if _per_sample(active) else t


def select(active, new, old):
    """`new` where `active` (batch,), else `old`; dicts of same keys."""
    out = {}
    for key in old:
        a = new[key]
        shape = tf.concat([tf.shape(active), tf.ones([a.shape.rank - 1],
                                                     tf.int32)], 0)
        out[key] = tf.where(tf.reshape(active, shape), a, old[key])
    return out


def _apply_leaf(op, data, args, active):
    if op.changes_size():
        return op.apply(data, args)
    if _per_sample(active):
        return tf.cond(active, lambda: op.apply(data, args), lambda: data)
    return tf.cond(tf.reduce_any(active),
                   lambda: select(active, op.apply(data, args), data),
                   lambda: data)


def forward(node, data, params, active, chain=None):
    """Applies `node` where `active`; see the module docstring.

    With a `chain.Chain`, consecutive geometric ops are queued in it and
    sampled once, when another op needs the pixels; the caller flushes
    it at the end (`run` does)."""
    if isinstance(node, Op):
        if chain is not None and warp_chain.composes(node):
            if not chain.accepts(node):
                data = chain.flush(data, _apply_leaf)
            chain.push(node, params["args"], active)
            return data
        if chain is not None:
            data = chain.flush(data, _apply_leaf)
        return _apply_leaf(node, data, params["args"], active)
    children = params["children"]
    gate = _flag(params["gate"], active)
    if isinstance(node, OneOrOther):
        # The picked child is always applied.
        first = _flag(params["branch"], active)
        data = forward(node.transforms[0], data, children[0], active & first,
                       chain)
        return forward(node.transforms[1], data, children[1],
                       active & ~first, chain)
    active = active & gate
    if isinstance(node, Compose):
        for t, cp in zip(node.transforms, children):
            data = forward(t, data, cp, active & _flag(cp["gate"], active),
                           chain)
    elif isinstance(node, OneOf):
        choice = _flag(params["choice"], active)
        for i, (t, cp) in enumerate(zip(node.transforms, children)):
            data = forward(t, data, cp, active & tf.equal(choice, i), chain)
    elif isinstance(node, SomeOf):
        picked = params["picked"]
        for i, (t, cp) in enumerate(zip(node.transforms, children)):
            chosen = _flag(picked[:, i], active)
            data = forward(t, data, cp,
                           active & chosen & _flag(cp["gate"], active),
                           chain)
    else:  # pragma: no cover - every container is handled above
        raise TypeError(f"unknown node {node!r}")
    return data


def _forward_all(tree, data, params, active, per_sample, compose_geometric):
    if not compose_geometric:
        return forward(tree, data, params, active)
    chain = warp_chain.Chain(per_sample)
    data = forward(tree, data, params, active, chain)
    return chain.flush(data, _apply_leaf)


INTEGER_IMAGES = (tf.uint8, tf.uint16)


def float_images(images):
    """uint8 / uint16 images scaled to [0, 1] float32 as
    `tf.image.convert_image_dtype` does (the records' decoding does the
    same); other images as they are."""
    images = tf.convert_to_tensor(images)
    if images.dtype in INTEGER_IMAGES:
        return tf.image.convert_image_dtype(images, tf.float32)
    return images


def _float_images(data):
    return dict(data, images=float_images(data["images"]))


def run(tree, data, seed, per_sample, compose_geometric=True):
    """Draws parameters for the batch and applies `tree`.

    Args:
        tree: the root node (its index assigned).
        data: {"images": (batch, height, width, channels) float32, and
            optionally "masks": (batch, height, width, classes) float32}.
            uint8 / uint16 images are scaled to [0, 1] float32 as
            `tf.image.convert_image_dtype` does, per sample when
            `per_sample` (no float copy of the whole batch).
        seed: int32 tensor of shape (2,).
        per_sample: map over the batch (True) or vectorize (False).
        compose_geometric: sample consecutive geometric ops once
            (`chain`) instead of once each.

    Returns:
        The transformed `data`.
    """
    images = data["images"]
    batch_size = tf.shape(images)[0]
    height = images.shape[1] if images.shape[1] is not None \
        else tf.shape(images)[1]
    width = images.shape[2] if images.shape[2] is not None \
        else tf.shape(images)[2]
    params = draw(tree, seed, batch_size, height, width)
    if not per_sample:
        return _forward_all(tree, _float_images(data), params,
                            tf.ones([batch_size], tf.bool), False,
                            compose_geometric)
    out_h, out_w = tree.output_size(images.shape[1], images.shape[2])
    if not isinstance(out_h, int) or not isinstance(out_w, int):
        out_h = out_w = None
    signature = {
        key: tf.TensorSpec([out_h, out_w, value.shape[-1]],
                           tf.float32 if key == "images" else value.dtype)
        for key, value in data.items()}

    def one(elems):
        sample, sample_params = tf.nest.map_structure(
            lambda t: t[None], elems)
        sample = _float_images(sample)
        out = _forward_all(tree, sample, sample_params, tf.constant(True),
                           True, compose_geometric)
        return {key: value[0] for key, value in out.items()}

    return tf.map_fn(one, (data, params), fn_output_signature=signature)
