"""Consecutive geometric ops sampled once.

Affine, grid, optical and elastic warps are maps of coordinates: each
output pixel reads its input at a source point. When such ops follow one
another, `forward` (in `base`) queues them in a `Chain` instead of
resampling after each, and the chain is sampled when something needs the
pixels (any other op, or the end of the tree): the map of the last op is
followed back through the earlier ones, and the images and masks are read
once at the composed source points.

What a step of the chain does is what reading the previous op's output
would have done:

- images (bilinear): the point where op k+1 reads op k's output is folded
  by the border mode and split into its two taps per axis
  (`warp.border_taps`); op k's map is read at those taps with the same
  weights (`map_taps`), which for a linear image is exactly what
  interpolating op k's output gives. So for a linear image the composed
  result equals the sequential one away from the borders, and elsewhere
  it differs by the interpolation of an interpolation only. With the
  constant border the share of a read that falls outside is kept and the
  fill mixed in at the end.
- masks (nearest): the point is rounded and folded as a nearest read
  rounds it (`warp.border_nearest`), then op k's map is taken at that
  pixel: an index map of index maps, so the masks are those of the
  sequential ops except where float rounding moves a tie.

Ops that are not active for a sample are skipped (the identity); a chain
in which fewer than two ops are active for a sample runs them one by one
as before (same pixels). Only ops that share interpolations, border mode
and fills (`compose_key`) are chained; another key starts a new chain.

Example:

>>> chain = Chain(per_sample=True)
>>> chain.push(op, args, active)            # inside `forward`
>>> data = chain.flush(data, apply_leaf)    # sampled once
"""

import tensorflow as tf

from kaggle_tf.augment.ops import warp


def composes(node):
    """Whether `node` is an op a chain can queue."""
    return getattr(node, "composes", False)


class Chain:
    """Geometric ops waiting to be sampled together; see the module
    docstring. `stages` holds (op, args, active) in the order they apply.
    """

    def __init__(self, per_sample):
        self.per_sample = per_sample
        self.stages = []

    def accepts(self, op):
        return not self.stages \
            or self.stages[0][0].compose_key() == op.compose_key()

    def push(self, op, args, active):
        self.stages.append((op, args, active))

    def flush(self, data, apply_leaf):
        """Samples the queued ops into `data` and empties the chain.

        `apply_leaf(op, data, args, active)` runs one op as `forward` does;
        it is used when fewer than two ops are active.
        """
        stages, self.stages = self.stages, []
        if not stages:
            return data
        if len(stages) == 1:
            return apply_leaf(stages[0][0], data, *stages[0][1:])

        def one_by_one():
            out = data
            for op, args, active in stages:
                out = apply_leaf(op, out, args, active)
            return out

        def at_once():
            return sample(stages, data, self.per_sample)

        count = tf.add_n([tf.cast(active, tf.int32)
                          for _, _, active in stages])
        if self.per_sample:
            return tf.cond(count >= 2, at_once, one_by_one)
        return tf.cond(tf.reduce_any(count >= 2), at_once, one_by_one)


def _select(active, new, old):
    flags = tf.reshape(active, [-1, 1, 1])
    return tf.nest.map_structure(lambda a, b: tf.where(flags, a, b),
                                 new, old)


def sample(stages, data, per_sample):
    """Reads `data` once at the composed map of `stages` (same
    `compose_key`; (op, args, active) in the order they apply)."""
    first = stages[0][0]
    images = data["images"]
    height, width = warp.size_of(images, 1), warp.size_of(images, 2)
    mode = first.border_mode
    constant = mode == warp.BORDER_CONSTANT
    methods = {first.interpolation}
    if "masks" in data:
        methods.add(first.mask_interpolation)
    ys, xs = warp.grid(images)
    # One walk per sampling method: (ys, xs) and, for the constant
    # border, the share inside (bilinear) or whether inside (nearest).
    walks = {}
    for method in sorted(methods):
        walks[method] = (ys, xs)
        if constant:
            inside = tf.ones_like(ys) if method == warp.LINEAR \
                else tf.ones(tf.shape(ys), tf.bool)
            walks[method] += (inside,)

    def step(op, args, walks):
        state = op.prepare(args, height, width)
        out = {}
        for method, walk in walks.items():
            if method == warp.LINEAR:
                taps_y = warp.border_taps(walk[0], height, mode)
                taps_x = warp.border_taps(walk[1], width, mode)
                new = op.map_taps(state, taps_y, taps_x)
                if constant:
                    new += (walk[2] * taps_y.weight * taps_x.weight,)
            else:
                py, in_y = warp.border_nearest(walk[0], height, mode)
                px, in_x = warp.border_nearest(walk[1], width, mode)
                new = op.map_points(state, py, px)
                if constant:
                    new += (walk[2] & in_y & in_x,)
            out[method] = new
        return out

    def first_step(op, args):
        # At whole pixels inside the image every walk is the map itself.
        state = op.prepare(args, height, width)
        mapped = op.map_points(state, ys, xs)
        return {method: mapped + initial[len(mapped):]
                for method, initial in walks.items()}

    # The last op maps output pixels into the previous op's output, and
    # so on back to the input.
    started = tf.constant(False)
    for op, args, active in reversed(stages):
        def run(op=op, args=args, walks=walks):
            return step(op, args, walks)

        if per_sample:
            # The last active op maps whole pixels, once for all walks.
            def go(op=op, args=args, run=run, started=started):
                walks = tf.cond(started, run,
                                lambda: first_step(op, args))
                return walks, tf.constant(True)

            walks, started = tf.cond(
                active, go, lambda walks=walks, started=started: (
                    walks, started))
        else:
            walks = tf.cond(
                tf.reduce_any(active),
                lambda active=active, run=run, walks=walks: _select(
                    active, run(), walks),
                lambda walks=walks: walks)

    image_walk = walks[first.interpolation]
    mask_walk = walks.get(first.mask_interpolation)
    out = first.remap(data, image_walk[0], image_walk[1],
                      _with_mask_coords(mask_walk))
    if not constant:
        return out
    fills = warp.fill_values(data, first.fill, first.fill_mask)
    for key, walk, method in (
            ("images", image_walk, first.interpolation),
            ("masks", mask_walk, first.mask_interpolation)):
        if key not in out:
            continue
        x, fill = out[key], fills[key]
        if method == warp.LINEAR:
            share = tf.cast(walk[2], x.dtype)[..., None]
            out[key] = x * share + fill * (1.0 - share)
        else:
            out[key] = tf.where(walk[2][..., None], x, fill)
    return out


def _with_mask_coords(mask_walk):
    """`warp.warp_data` with the masks read at their own walk."""
    def fn(*args):
        coords = None if mask_walk is None else mask_walk[:2]
        return warp.warp_data(*args, mask_coords=coords)

    return fn
