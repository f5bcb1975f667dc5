"""Gradient accumulation that runs on several TensorFlow replicas.

Keras' own accumulation (`gradient_accumulation_steps`) picks between
"update the variables" and "add to the accumulators" with a conditional
whose branches call the strategy's cross-replica update (`merge_call`),
which a `tf.distribute` strategy cannot enter from a conditional
(keras-team/keras#20582): a fit on two replicas stops at its first step.

`ReplicaAccumulationMixin` computes the same thing without a conditional
around a cross-replica call. At every step, in the replica context:

1. the gradients are summed over the replicas (as Keras does for every
   update);
2. the averaged gradients of the window, `(g + accumulated) / steps`, are
   formed and clipped (`clipnorm`, `clipvalue`, `global_clipnorm`), from
   the replica's own copy of the accumulators, which every replica holds
   equal.

Then one cross-replica update visits each variable on each device, and
there, on one device's copies only, a conditional applies weight decay and
`update_step` on the last step of a window, and the accumulator is reset
on that step, else incremented. Conditionals inside a per-device update
are plain graph code.

The result is Keras' accumulation step for step: the same update on the
same iteration, the same averaged gradient, clipping after averaging,
weight decay before the update, EMA after every call, and the iteration
counter the schedules see (`optimizer.iterations`, the number of updates).
With one replica, or another backend, the mixin changes nothing: Keras'
own path runs.
"""

import keras
import tensorflow as tf


def _tf_value(variable):
    return variable.value if isinstance(variable, keras.Variable) \
        else variable


class ReplicaAccumulationMixin:
    """Gradient accumulation that works on several `tf.distribute`
    replicas (see the module docstring). Mixed into a Keras optimizer
    class, before it."""

    def _decays_in_update_step(self):
        """Whether `update_step` applies the weight decay itself (the
        encoder-LR optimizers do, at each variable's learning rate): asks
        the class this mixin is put before, False when it does not say."""
        parent = getattr(super(), "_decays_in_update_step", None)
        return bool(parent()) if parent is not None else False

    def _across_replicas(self):
        if (not self.gradient_accumulation_steps
                or keras.backend.backend() != "tensorflow"):
            return False
        context = tf.distribute.get_replica_context()
        if context is None:
            return False
        return context.num_replicas_in_sync > 1

    def _backend_apply_gradients(self, grads, trainable_variables):
        if not self._across_replicas():
            return super()._backend_apply_gradients(grads,
                                                    trainable_variables)
        self._accumulate_on_replicas(grads, trainable_variables)
        if self.use_ema:
            self._update_model_variables_moving_average(
                self._trainable_variables)
            if self.ema_overwrite_frequency:
                overwrite = (self.iterations + 1) \
                    % self.ema_overwrite_frequency == 0
                keras.ops.cond(
                    overwrite,
                    lambda: self._overwrite_model_variables_with_average_value(
                        self._trainable_variables),
                    lambda: None)

    def _accumulate_on_replicas(self, grads, trainable_variables):
        steps = self.gradient_accumulation_steps
        accumulators = [
            _tf_value(self._accumulated_gradients[
                self._get_variable_index(v)])
            for v in trainable_variables]
        variables = [_tf_value(v) for v in trainable_variables]
        summed = [g for g, _ in self._all_reduce_sum_gradients(
            list(zip(grads, variables)))]
        # Replica context: each replica reads its own (equal) copies.
        window = [(g + tf.cast(a, g.dtype)) / steps
                  for g, a in zip(summed, accumulators)]
        window = self._clip_gradients(window)
        is_update = tf.equal((self._iterations + 1) % steps, 0)
        learning_rate = self.learning_rate
        decay = (self.weight_decay is not None
                 and not self._decays_in_update_step())

        def on_device(variable, grad, mean, accumulator, is_update, lr):
            def update():
                if decay and self._use_weight_decay(variable):
                    variable.assign_sub(
                        variable * tf.cast(self.weight_decay, variable.dtype)
                        * tf.cast(lr, variable.dtype))
                self.update_step(mean, variable, lr)
                return tf.constant(True)

            tf.cond(is_update, update, lambda: tf.constant(False))
            accumulator.assign(tf.where(
                is_update, tf.zeros_like(accumulator),
                accumulator + tf.cast(grad, accumulator.dtype)))

        def cross_replica(distribution, summed, window, is_update, lr):
            for variable, grad, mean, accumulator in zip(
                    variables, summed, window, accumulators):
                distribution.extended.update(
                    variable, on_device,
                    args=(grad, mean, accumulator, is_update, lr),
                    group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica, self._distribution_strategy, summed, window,
            is_update, learning_rate)
