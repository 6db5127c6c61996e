"""The study kit: what every ``equirelax <study>`` command shares, written once.

* :mod:`~equirelax.experiments.kit.options`: one command-line vocabulary (``--seeds`` as a list,
  ``--out``, ``--runs-dir``, ``--fresh``, ``--no-progress``, ``--threads``, ``--devices`` /
  ``--accelerator`` / ``--num-nodes``, ``--preset`` / ``--quick``, ``--relax`` from the schedule
  registry, ``--variants``) and a help formatter that shows defaults;
* :mod:`~equirelax.experiments.kit.config`: a study's dataclass config as options, and the
  config of a command (preset, then options);
* :mod:`~equirelax.experiments.kit.argtypes`: ``type=`` functions (usage errors, status 2);
* :mod:`~equirelax.experiments.kit.commands`: the command that reproduces a run;
* :mod:`~equirelax.experiments.kit.tables`: summaries over seeds, paired comparisons,
  markdown tables and the results files;
* :mod:`~equirelax.experiments.kit.runs`: run folders (checked, ``--fresh``, settings,
  training time over resumes);
* :mod:`~equirelax.experiments.kit.guards`: errors, interruptions and writable folders;
* :mod:`~equirelax.experiments.kit.runner`: the Lightning training runner.

Importing this package imports none of its modules (the runner pulls in Lightning).
"""
