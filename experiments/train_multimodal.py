"""Train a 4M variant on Ray Train: `python experiments/train_multimodal.py --config m4 --preset tiny`.

The same arguments as `motionlab train multimodal`, for `ray job submit -- python ...`.
"""

import sys

from motionlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "multimodal", *sys.argv[1:]]))
