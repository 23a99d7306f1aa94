"""CLI wiring of verbs whose generic implementation needs a task's knowledge.

The generic layers (``training/``, ``runtime/``) take plain arguments; these modules, like
``sim/`` and ``tasks/``, may import the task registry and turn a :class:`TaskSpec` into
those arguments. Each module is a verb (``add_arguments(parser)``, ``run(args)``).
"""
