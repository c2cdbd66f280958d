"""Tokenise Penn Action with Ray Data: `python pipelines/tokenize_penn_action.py --config m4 --preset tiny`.

A thin entry point over `motionlab prepare penn-action`, for `ray job submit -- python ...`.
"""

import sys

from motionlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "penn-action", *sys.argv[1:]]))
