"""`python -m orchestration.instance [DAGSTER_HOME] [--postgres]`."""

import sys

from orchestration.instance import main

main(sys.argv[1:])
