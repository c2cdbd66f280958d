"""Physics of motions: a differentiable per-frame state, differentiable losses, metrics, PyBullet evaluation."""

from motionlab.physics.kinematics import to_metres
from motionlab.physics.state import PHYSICS_STATE_DIM, STATE_SLOTS, physics_state

__all__ = ["PHYSICS_STATE_DIM", "STATE_SLOTS", "physics_state", "to_metres"]
