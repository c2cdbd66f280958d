"""Pose tokens: bin-centre round trip within half a bin, explicit visibility states, exact layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from motionlab.modalities import POSE_JOINTS, POSE_TOKENS_PER_FRAME
from motionlab.tokenizers.pose import VIS_INVISIBLE, VIS_OUTSIDE, VIS_VISIBLE, PoseQuantizer

# float error of v / width at a bin edge may put v one ulp into the neighbouring bin
EDGE_SLACK = 1e-9


def _half_bin(q: PoseQuantizer) -> float:
    return q.bin_width / 2 + EDGE_SLACK * q.canvas


@settings(max_examples=200, deadline=None)
@given(
    bins=st.sampled_from([16, 256, 1000, 8192]),
    canvas=st.sampled_from([64, 224, 256, 517]),
    unit=arrays(np.float64, (2, POSE_JOINTS), elements=st.floats(0.0, 1.0, exclude_max=True)),
)
def test_in_frame_joints_round_trip_within_half_a_bin(bins: int, canvas: int, unit: np.ndarray) -> None:
    q = PoseQuantizer(bins=bins, canvas=canvas)
    x, y = unit * canvas
    tokens = q.encode(x, y, np.ones(POSE_JOINTS, dtype=bool))
    assert tokens.shape == (POSE_TOKENS_PER_FRAME,) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < bins == q.codebook_size
    xd, yd, state = q.decode(tokens)
    assert np.all(np.abs(xd - x) <= _half_bin(q))
    assert np.all(np.abs(yd - y) <= _half_bin(q))
    assert np.all(state == VIS_VISIBLE)


def test_decoded_joint_is_the_bin_centre_not_its_edge() -> None:
    q = PoseQuantizer(bins=8, canvas=256)  # 32-pixel bins
    tokens = q.encode(np.full(13, 0.0), np.full(13, 95.9), np.ones(13, dtype=bool))
    xd, yd, _ = q.decode(tokens)
    assert np.allclose(xd, 16.0) and np.allclose(yd, 80.0)


def test_token_layout_is_x_y_state_per_joint() -> None:
    q = PoseQuantizer(bins=256, canvas=256)  # 1-pixel bins: the bin is the integer pixel
    x = np.arange(13, dtype=np.float64) + 0.25
    y = 100 + np.arange(13, dtype=np.float64)
    vis = np.ones(13, dtype=bool)
    vis[3] = False
    tokens = q.encode(x, y, vis)
    assert tokens[:6].tolist() == [0, 100, VIS_VISIBLE, 1, 101, VIS_VISIBLE]
    assert tokens[9:12].tolist() == [3, 103, VIS_INVISIBLE]


def test_states_for_invisible_and_outside_joints() -> None:
    q = PoseQuantizer(bins=8192, canvas=256)
    x = np.array([10.0, -5.0, 300.0, 10.0, 256.0, -1.0, 128.0, 128.0, 0.0, 255.0, 50.0, 60.0, 70.0])
    y = np.array([10.0, 10.0, 10.0, -0.5, 10.0, 999.0, 128.0, 128.0, 0.0, 255.0, 50.0, 60.0, 70.0])
    vis = np.ones(13, dtype=bool)
    vis[[5, 6]] = False  # 5: invisible and outside; 6: invisible inside
    xd, yd, state = q.decode(q.encode(x, y, vis))
    assert state.tolist() == [1, 2, 2, 2, 2, 0, 0, 1, 1, 1, 1, 1, 1]
    assert state[1] == state[2] == VIS_OUTSIDE and state[5] == state[6] == VIS_INVISIBLE
    w = q.bin_width
    # outside joints are clamped to the canvas edge bins
    assert xd[1] == pytest.approx(w / 2) and xd[2] == pytest.approx(256 - w / 2)
    assert yd[3] == pytest.approx(w / 2) and xd[4] == pytest.approx(256 - w / 2)
    # an invisible joint still carries its (clamped) position
    assert (xd[5], yd[5]) == (pytest.approx(w / 2), pytest.approx(256 - w / 2))
    assert abs(xd[6] - 128) <= w / 2 and abs(yd[6] - 128) <= w / 2


def test_edge_values() -> None:
    q = PoseQuantizer(bins=8192, canvas=256)
    eps = 1e-6
    x = np.array([0.0, 256 - eps, 256.0, *[1.0] * 10])
    tokens = q.encode(x, np.full(13, 5.0), np.ones(13, dtype=bool))
    assert tokens[0::3][:3].tolist() == [0, 8191, 8191]
    assert tokens[2::3][:3].tolist() == [VIS_VISIBLE, VIS_VISIBLE, VIS_OUTSIDE]
    assert tokens.max() < 8192


def test_batched_frames_and_integer_coordinates() -> None:
    rng = np.random.default_rng(0)
    q = PoseQuantizer(bins=8192, canvas=256)
    x = rng.uniform(0, 256, (5, 4, 13))
    y = rng.uniform(0, 256, (5, 4, 13))
    vis = rng.random((5, 4, 13)) > 0.2
    tokens = q.encode(x, y, vis)
    assert tokens.shape == (5, 4, 39) and tokens.dtype == np.int32
    assert np.array_equal(tokens[2, 1], q.encode(x[2, 1], y[2, 1], vis[2, 1]))
    xd, yd, state = q.decode(tokens)
    assert xd.shape == yd.shape == state.shape == (5, 4, 13)
    assert np.abs(xd - x).max() <= _half_bin(q) and np.abs(yd - y).max() <= _half_bin(q)
    assert np.array_equal(state, np.where(vis, VIS_VISIBLE, VIS_INVISIBLE))
    # real label files store some coordinates as uint16
    xi = np.arange(13, dtype=np.uint16) * 19
    assert np.array_equal(
        q.encode(xi, xi, np.ones(13, bool)), q.encode(xi.astype(float), xi.astype(float), np.ones(13, bool))
    )


def test_nan_and_bad_shapes_raise() -> None:
    q = PoseQuantizer()
    x = np.zeros(13)
    x[4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        q.encode(x, np.zeros(13), np.ones(13, dtype=bool))
    with pytest.raises(ValueError, match="13"):
        q.encode(np.zeros(12), np.zeros(12), np.ones(12, dtype=bool))
    with pytest.raises(ValueError, match="39"):
        q.decode(np.zeros(38, dtype=np.int32))
    bad_state = np.zeros(39, dtype=np.int32)
    bad_state[2] = 7
    with pytest.raises(ValueError, match="visibility"):
        q.decode(bad_state)
