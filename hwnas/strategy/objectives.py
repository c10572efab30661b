"""What the search optimises and what a network must satisfy.

A network is described to objectives and constraints by:
  figures: its hardware figures, known before any training (hwnas.network.figures.HardwareFigures:
           n_params, max_tens, flops, flash_size, ram_size, and latency_ms and energy_mj of one
           inference on the target device); a user's function gets them as a dict;
  scores:  its validation scores after training: val_accuracy, val_f1 (the test
           split is never shown to the search).
Objectives are ranked as NSGA-II does (non-dominated sorting, then crowding
distance); with a single objective the ranking is the plain order of its values.
Sorting, crowding and hypervolume come from pymoo.
"""
import math

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hwnas.common.numbers import is_number
from hwnas.network.figures import HardwareFigures

# Built-in objectives and their direction: the scores, larger is better; every hardware figure, smaller.
BUILTIN_OBJECTIVES = {"val_accuracy": "max", "val_f1": "max", **{name: "min" for name in HardwareFigures.names()}}


class UserFunctionError(ValueError):
    """A user-defined constraint or objective raised or returned something unusable."""


def hardware_figures(net, device):
    """The HardwareFigures of a network, from its analytic cost model (no Keras model is built);
    latency and energy on device (a hwnas.devices.TargetDevice)."""
    latency_ms = device.latency_ms(net)
    return net.figures().on_device(round(latency_ms, 4), round(device.energy_mj(latency_ms), 5))


def check_custom_functions(custom_constraints, custom_objectives):
    """Problems (a list of texts) with user-defined constraints and objectives.

    custom_constraints: name -> function(figures) returning True when the network passes.
    custom_objectives: name -> (function(figures, scores) returning a number, "max" or "min").
    """
    problems = []
    if not isinstance(custom_constraints, dict):
        problems.append(f"custom_constraints must be a dict name -> function(figures), got {custom_constraints!r}")
    else:
        for name, function in custom_constraints.items():
            if not callable(function):
                problems.append(f"custom_constraints[{name!r}] must be a function of the figures, got {function!r}")
    if not isinstance(custom_objectives, dict):
        problems.append(f"custom_objectives must be a dict name -> (function(figures, scores), 'max' or 'min'), "
                        f"got {custom_objectives!r}")
    else:
        for name, entry in custom_objectives.items():
            if name in BUILTIN_OBJECTIVES:
                problems.append(f"custom_objectives[{name!r}] hides the built-in objective of that name")
            elif not (isinstance(entry, tuple) and len(entry) == 2 and callable(entry[0])
                      and entry[1] in ("max", "min")):
                problems.append(f"custom_objectives[{name!r}] must be (function(figures, scores), 'max' or 'min'), "
                                f"got {entry!r}")
    return problems


class Objectives:
    """The objectives of a search, in order: the first one decides "the best network".

    names: objective names, built-in (BUILTIN_OBJECTIVES) or keys of custom.
    custom: name -> (function(figures, scores), "max" or "min").
    """

    def __init__(self, names, custom=None):
        custom = custom or {}
        unknown = [name for name in names if name not in BUILTIN_OBJECTIVES and name not in custom]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"objectives must be distinct names from {sorted(BUILTIN_OBJECTIVES)} or "
                             f"custom_objectives {sorted(custom)}, got {list(names)!r}")
        self.names = list(names)
        self.functions = {name: custom[name][0] for name in names if name in custom}
        self.directions = {name: custom[name][1] if name in custom else BUILTIN_OBJECTIVES[name] for name in names}

    def values(self, figures, scores):
        """Each objective's value, by name; None when the network has no scores (failed, untrained)."""
        if scores.get("val_accuracy") is None:
            return None
        values = {}
        for name in self.names:
            if name in self.functions:
                try:
                    value = self.functions[name](figures.as_dict(), dict(scores))
                except Exception as error:
                    raise UserFunctionError(f"custom objective {name!r} raised {type(error).__name__}: {error} "
                                            f"(figures {figures.as_dict()}, scores {scores})") from error
            else:
                value = getattr(figures, name) if name in HardwareFigures.names() else scores[name]
            if not is_number(value) or not math.isfinite(value):
                raise UserFunctionError(f"objective {name!r} gave {value!r}, not a finite number "
                                        f"(figures {figures.as_dict()}, scores {scores})")
            values[name] = float(value)
        return values

    def to_minimise(self, values):
        """The values as a vector to minimise (objectives to maximise are negated)."""
        return [-values[name] if self.directions[name] == "max" else values[name] for name in self.names]

    def fitness(self, values):
        """The first objective, larger is better (what single-score comparisons use)."""
        return -self.to_minimise(values)[0]


class Ranking:
    """Objectives applied to networks: each one's fitness, NSGA-II's order, the best.

    objectives: Objectives; figures: function(network) -> its figures dict.
    A network's scores are its validation accuracy and F1 (None before training
    or when it failed).
    """

    def __init__(self, objectives, figures):
        self.objectives, self.figures = objectives, figures

    @staticmethod
    def scores(net):
        return {"val_accuracy": net.val_score, "val_f1": (net.val_metrics or {}).get("f1")}

    def values(self, net):
        """The objective values of net, by name; None when it has no scores."""
        return self.objectives.values(self.figures(net), self.scores(net))

    def fitness(self, net):
        """The first objective of net, larger is better; None when net has no scores."""
        values = self.values(net)
        return None if values is None else self.objectives.fitness(values)

    def vectors(self, networks):
        """Each network's objectives as a vector to minimise (every network must have scores)."""
        return [self.objectives.to_minimise(self.values(net)) for net in networks]

    def ranked(self, networks):
        """The networks (all with scores), best first: NSGA-II's order on the objectives,
        among networks of equal training only (fidelity_groups)."""
        return [group[i] for group in fidelity_groups(networks) for i in nsga2_order(self.vectors(group))]

    def ranks_and_crowding(self, networks):
        """NSGA-II's (front rank, crowding distance) of each network (all with scores); the
        fronts of a less trained group come after every front of a better trained one."""
        ranks, crowding = {}, {}
        offset = 0
        for group in fidelity_groups(networks):
            group_ranks, group_crowding = rank_and_crowding(self.vectors(group))
            for network, rank, distance in zip(group, group_ranks, group_crowding):
                ranks[id(network)], crowding[id(network)] = offset + int(rank), float(distance)
            offset += int(max(group_ranks)) + 1
        return [ranks[id(network)] for network in networks], [crowding[id(network)] for network in networks]

    def best_by_first_objective(self, networks, scores=None):
        """The network with the best first objective (the first of equals) among those fully
        trained (not stopped early by successive halving); None when none has scores. scores:
        the first objective of each network when the caller has them (None: computed here)."""
        scores = map(self.fitness, networks) if scores is None else scores
        scored = [(score, -index) for index, score in enumerate(scores)
                  if score is not None and not getattr(networks[index], "stopped_early", False)]
        if not scored:
            return None
        return networks[-max(scored)[1]]

    def front(self, networks):
        """The Pareto front of (child_id, network) pairs on these objectives: (child_id, network,
        objective values) of those no other beats in every objective, best first objective first
        (networks without scores are left out)."""
        candidates = [(child_id, network, values) for child_id, network in networks
                      if (values := self.values(network)) is not None]
        to_minimise = self.objectives.to_minimise
        front = first_front([to_minimise(values) for _, _, values in candidates])
        return sorted((candidates[i] for i in front), key=lambda member: to_minimise(member[2]))

    def check_on(self, network):
        """Computes the objectives of an untrained network with made-up scores, so that a
        user-defined objective that fails stops the run before any training."""
        self.objectives.values(self.figures(network), {"val_accuracy": 0.5, "val_f1": 0.5})


def check_constraint(name, constraint, figures):
    """Whether the network of these figures passes a user-defined constraint; a
    constraint that raises or returns anything but a truth value is named."""
    try:
        passed = constraint(figures.as_dict())
    except Exception as error:
        raise UserFunctionError(f"custom constraint {name!r} raised {type(error).__name__}: {error} "
                                f"(figures {figures.as_dict()})") from error
    if not isinstance(passed, (bool, np.bool_)):
        raise UserFunctionError(f"custom constraint {name!r} returned {passed!r}, not True or False")
    return bool(passed)


def fidelity_groups(networks):
    """The networks grouped by how far they were trained, most first: those fully trained,
    then those successive halving stopped early, by rung, highest first. Scores of
    different groups are of different epoch budgets, so they are never compared."""
    def fidelity(network):
        return (not getattr(network, "stopped_early", False), getattr(network, "rung", None) or 0)

    levels = sorted({fidelity(network) for network in networks}, reverse=True)
    return [[network for network in networks if fidelity(network) == level] for level in levels]


def rank_and_crowding(vectors):
    """NSGA-II's ordering of points to minimise: (front rank, crowding distance) per point.

    Front 0 holds the points no other point dominates; within a front a larger
    crowding distance (inf at the front's ends) means a less crowded point.
    """
    ranks, crowding = np.zeros(len(vectors), dtype=int), np.zeros(len(vectors))
    if len(vectors) == 0:  # checked first: an empty array has no row length to reshape to
        return ranks, crowding
    points = np.asarray(vectors, dtype=float).reshape(len(vectors), -1)
    for rank, front in enumerate(NonDominatedSorting().do(points)):
        ranks[front] = rank
        crowding[front] = calc_crowding_distance(points[front])
    return ranks, crowding


def nsga2_order(vectors):
    """Indices of the points, best first: by front rank, then by larger crowding distance."""
    ranks, crowding = rank_and_crowding(vectors)
    return sorted(range(len(ranks)), key=lambda i: (ranks[i], -crowding[i], i))


def first_front(vectors):
    """Indices of the points (to minimise) that no other point dominates, in input order."""
    if len(vectors) == 0:
        return []
    points = np.asarray(vectors, dtype=float).reshape(len(vectors), -1)
    return sorted(int(i) for i in NonDominatedSorting().do(points, only_non_dominated_front=True))


def hypervolume(vectors, reference_point):
    """Hypervolume dominated by the points (to minimise) up to reference_point; points
    beyond the reference in any objective add nothing."""
    points = np.asarray(vectors, dtype=float).reshape(len(vectors), -1)
    reference_point = np.asarray(reference_point, dtype=float)
    inside = points[np.all(points < reference_point, axis=1)] if len(points) else points
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=reference_point)(inside))
