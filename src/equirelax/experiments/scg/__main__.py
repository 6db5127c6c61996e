"""``python -m equirelax.experiments.scg``: the SCG study without the top-level command line
(the same subcommands and options as ``equirelax scg``)."""

import argparse
import sys

import equirelax.experiments.scg as study
from equirelax.experiments.kit.options import DefaultsHelpFormatter

p = argparse.ArgumentParser(prog="equirelax scg", description=study.__doc__,
                            formatter_class=DefaultsHelpFormatter)
study.configure(p)
parsed = p.parse_args()
parsed.argv = ["scg", *sys.argv[1:]]  # the command recorded with the results
sys.exit(study.main(parsed))
