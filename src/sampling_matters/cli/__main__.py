"""``python -m sampling_matters.cli``: the same as the ``sampling-matters`` command."""

import sys

from sampling_matters.cli import main

if __name__ == "__main__":
    sys.exit(main())
