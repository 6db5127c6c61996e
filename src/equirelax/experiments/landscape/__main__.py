"""``python -m equirelax.experiments.landscape``: the same command as ``equirelax landscape``,
recorded with its results as such."""

import argparse
import sys

from equirelax.experiments import landscape
from equirelax.experiments.kit.options import DefaultsHelpFormatter
from equirelax.experiments.landscape.cli import configure, main

p = argparse.ArgumentParser(prog="equirelax landscape", description=landscape.__doc__,
                            formatter_class=DefaultsHelpFormatter)
configure(p)
parsed = p.parse_args()
parsed.argv = ["landscape", *sys.argv[1:]]  # the command recorded with the results
sys.exit(main(parsed))
