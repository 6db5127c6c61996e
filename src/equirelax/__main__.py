"""``python -m equirelax``: the command line."""

from equirelax.cli import main

raise SystemExit(main())
