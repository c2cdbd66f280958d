"""Sweep a 4M variant's Dirichlet alphas and learning rate: `python experiments/sweep_alphas.py --preset smoke`.

The same arguments as `motionlab sweep alphas`, for `ray job submit --working-dir . -- python ...`.
"""

import sys

from motionlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "alphas", *sys.argv[1:]]))
