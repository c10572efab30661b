"""Evaluating networks: one as a pure function (evaluate.py), many at once on workers or Ray (evaluators.py)."""
EXECUTORS = ("local", "ray")  # where the networks train: worker processes on this machine, or Ray tasks
