"""Train MotionSSM on Ray Train: `python experiments/train_motion_ssm.py --preset tiny [--data DIR] [key=value ...]`.

The same arguments as `motionlab train motion --model MotionSSM`, for `ray job submit -- python ...`; without
--data it trains on a KIT-ML look-alike generated in the workspace.
"""

import sys

from motionlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "motion", "--model", "MotionSSM", *sys.argv[1:]]))
