"""Sweep PhysicsSSM's lambda_physics and learning rate: `python experiments/sweep_physics.py --preset smoke`.

The same arguments as `motionlab sweep physics`, for `ray job submit --working-dir . -- python ...`; trials are
ranked by `eval/objective = eval/mse + W x eval/physics_total` (`--objective-weight W`).
"""

import sys

from motionlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "physics", *sys.argv[1:]]))
