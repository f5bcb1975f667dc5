"""PyTorch -> Keras tensor layouts (numpy only, and timm's stem rule)."""

import numpy as np
import pytest

from kaggle_tf.models import torch_layout as layout


def test_to_keras_layouts():
    conv = np.arange(8 * 3 * 7 * 5, dtype="float32").reshape(8, 3, 7, 5)
    out = layout.to_keras(conv, "conv")
    assert out.shape == (7, 5, 3, 8)
    assert out[2, 4, 1, 6] == conv[6, 1, 2, 4]
    dense = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(layout.to_keras(dense, "dense"), dense.T)
    # depthwise: torch output channel c * mult + j -> keras [.., c, j]
    depth = np.arange(6 * 9, dtype="float32").reshape(6, 1, 3, 3)
    out = layout.to_keras_like(depth, "depthwise", (3, 3, 3, 2))
    assert out[1, 2, 2, 1] == depth[2 * 2 + 1, 0, 1, 2]
    assert layout.torch_shape((3, 3, 3, 2), "depthwise") == (6, 1, 3, 3)
    with pytest.raises(ValueError, match="kind=.*'linear'"):
        layout.to_keras(dense, "linear")


@pytest.mark.torch
@pytest.mark.parametrize("in_chans", [1, 2, 4, 5, 7])
def test_adapt_input_conv_matches_timm(in_chans, torch_ref):
    manipulate = pytest.importorskip("timm.models._manipulate")
    adapt_input_conv = manipulate.adapt_input_conv

    weight = torch_ref.randn(16, 3, 7, 7)
    want = adapt_input_conv(in_chans, weight.clone()).numpy()
    got = layout.adapt_input_conv(in_chans, weight.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
