"""The search: making children, hardware-constraint checks, training of each generation, selection, records.

Three strategies (search_strategy), sharing everything but how children are made
and who survives:
  "mutation": the specification's loop. One parent, `n_child` mutated children
      per generation; the best child becomes the next parent (random walk) or
      competes with it.
  "ga": a population genetic algorithm. `population_size` networks; each child
      is made from two parents chosen by tournament, crossed over at block
      boundaries, then mutated; the next population is the best of the elites
      and the children, ranked as NSGA-II ranks (library_objectives).
  "random": `n_child` uniformly random valid networks per generation (the
      baseline a search strategy has to beat).
Every child is checked against the hardware thresholds and the user's
constraints before any training; an architecture already evaluated is never
trained again (its result is reused). Every child is written to children.csv as
it finishes, the Pareto front to pareto.csv after every generation; the NAS log
is for people.
"""
import csv
import inspect
import io
import json
import os
import random
import re
import signal
import threading
import time

import numpy as np
from tqdm import tqdm

import library_objectives as objectives_lib
import library_report as report
from library_block import ACTIVATIONS, DEPLOYED_COST, Block
from library_config import display_path, make_run_dir, write_atomically
from library_load_and_split_data import SessionData
from library_net import HEADS, Net, architecture_key, chain_blocks
from library_records import RunRecords, light_state
from library_worker import EvaluationWorker, WorkerDied

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))

# Each threshold parameter and the figure (library_objectives) it limits.
HW_THRESHOLDS = {"params_thr": "n_params", "max_tens_thr": "max_tens", "flops_thr": "flops",
                 "flash_thr": "flash_size", "ram_thr": "ram_size", "latency_thr": "latency_ms"}
SEARCH_STRATEGIES = ("mutation", "ga", "random")

PARETO_FIELDS = ("child_id", "generation", "n_params", "max_tens", "flops", "flash_size", "flash_measured",
                 "ram_size", "ram_measured", "latency_ms", "val_accuracy", "val_f1", "test_accuracy",
                 "deployed_test_accuracy", "architecture_text", "architecture")

# A small hand-crafted parent (smart_start): three conv/pool stages that shorten the
# sequence 8x, then a Flatten head. On the demo data it reaches ~0.97 test accuracy.
SMART_START_HEAD = "flatten"
SMART_START_BLOCKS = (
    dict(filters=16, kernel_size=5, stride=2, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
)


# One row of the NAS log's child table; flash and RAM show the estimate / the measured value.
LOG_ROW = "{:<11} {:<7} {:<14} {:>7} {:>7} {:>10} {:>15} {:>15} {:>7} {}"
LOG_HEADER = LOG_ROW.format("child", "status", "mutation", "val_acc", "params", "FLOPs",
                            "flash B est/meas", "RAM B est/meas", "train s", "architecture")


def check_search_parameters(parameters, n_folds=None):
    """Raises ValueError naming every search parameter whose value cannot work.

    parameters: NAS keyword arguments; those left out take NAS's defaults.
    n_folds: the number of folds the search will get, when known.
    """
    defaults = {name: p.default for name, p in inspect.signature(NAS.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    parameters = dict(defaults, **{k: v for k, v in parameters.items() if k in defaults})
    problems = []
    for name in HW_THRESHOLDS:
        value = parameters[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            problems.append(f"{name} must be a positive number or None, got {value!r}")
    for name in ("n_child", "max_depth", "max_depth_father", "n_mutations", "n_generations", "max_attempts",
                 "epochs", "batch_size", "patience", "partial_save_steps", "num_selected_folds",
                 "max_failures_in_a_row", "population_size", "n_elites", "tournament_size"):
        minimum = 0 if name in ("n_generations", "n_elites") else 1
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not problems and parameters["max_depth_father"] > parameters["max_depth"]:
        problems.append(f"max_depth_father ({parameters['max_depth_father']}) must not exceed "
                        f"max_depth ({parameters['max_depth']})")
    if parameters["search_strategy"] not in SEARCH_STRATEGIES:
        problems.append(f"search_strategy must be one of {SEARCH_STRATEGIES}, got {parameters['search_strategy']!r}")
    if (not problems and parameters["search_strategy"] == "ga"
            and not parameters["n_elites"] <= parameters["population_size"] <= parameters["n_elites"] + parameters["n_child"]):
        problems.append(f"the population GA needs n_elites ({parameters['n_elites']}) <= population_size "
                        f"({parameters['population_size']}) <= n_elites + n_child ({parameters['n_child']}), "
                        f"so that elites and children can fill the next population")
    for name in ("clock_mhz", "flops_per_cycle"):
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{name} must be a positive number, got {value!r}")
    value = parameters["time_budget_s"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        problems.append(f"time_budget_s must be a positive number of seconds or None, got {value!r}")
    value = parameters["crossover_rate"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        problems.append(f"crossover_rate must be a probability in [0, 1], got {value!r}")
    custom_problems = objectives_lib.check_custom_functions(parameters["custom_constraints"] or {},
                                                            parameters["custom_objectives"] or {})
    problems += custom_problems
    if not custom_problems:
        try:
            objectives_lib.Objectives(list(parameters["objectives"]), parameters["custom_objectives"])
        except (ValueError, TypeError):
            problems.append(f"objectives must be a non-empty list of distinct names from "
                            f"{sorted(objectives_lib.BUILTIN_OBJECTIVES)} or the keys of custom_objectives, "
                            f"got {parameters['objectives']!r}")
    if not 0 <= parameters["dropout_min"] <= parameters["dropout_max"] < 1:
        problems.append(f"dropout rates need 0 <= dropout_min <= dropout_max < 1, got "
                        f"{parameters['dropout_min']} and {parameters['dropout_max']}")
    if not (isinstance(parameters["learning_rate"], (int, float)) and parameters["learning_rate"] > 0):
        problems.append(f"learning_rate must be > 0, got {parameters['learning_rate']!r}")
    if parameters["deploy_precision"] not in DEPLOYED_COST:
        problems.append(f"deploy_precision must be one of {tuple(DEPLOYED_COST)}, got {parameters['deploy_precision']!r}")
    for name, allowed in (("activation_choices", ACTIVATIONS), ("head_choices", HEADS)):
        unknown = [choice for choice in parameters[name] if choice not in allowed]
        if not parameters[name] or unknown:
            problems.append(f"{name} must be a non-empty list drawn from {list(allowed)}, got {parameters[name]!r}")
    for name in ("filters_choices", "kernel_size_choices", "stride_choices", "pool_size_choices"):
        values = parameters[name]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            problems.append(f"{name} must be a non-empty list of integers >= 1, got {values!r}")
    if (n_folds is not None and not parameters["use_full_training"]
            and isinstance(parameters["num_selected_folds"], int) and parameters["num_selected_folds"] > n_folds):
        problems.append(f"num_selected_folds ({parameters['num_selected_folds']}) is larger than "
                        f"the number of folds ({n_folds})")
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))


def search_parameter_names():
    """The names of the search's parameters: those of NAS but its data, run folder, naming
    and user-defined functions (B01_NAS.py passes those itself)."""
    plumbing = {"self", "preloaded_data", "run_dir", "logs_dir", "nas_saver_name", "partial_saver_name",
                "custom_constraints", "custom_objectives"}
    return set(inspect.signature(NAS.__init__).parameters) - plumbing


class ConstraintError(RuntimeError):
    """No candidate meeting the hardware thresholds was found within the attempts allowed."""


class SearchStopped(RuntimeError):
    """The search cannot go on (too many failed networks in a row, a failed initial parent)."""


class NAS:
    """Hardware-aware evolutionary search over lists of Conv1D blocks.

    Takes the parameters of B01_NAS.py as keyword arguments of the same names
    (see README for each one's meaning and unit); the original toolkit's leading
    ones can also be given by position, in its order. preloaded_data: a
    SessionData, or the original's 4-tuple (X_train_val, y_train_val, X_test,
    y_test) with one-hot labels. run_dir: the folder the run writes to; None
    makes <logs_dir>/<timestamp>_<nas_saver_name> as B01_NAS.py does.
    partial_saver_name: when given, the saved models are named
    <partial_saver_name>_best_model.* and <partial_saver_name>_parent.* (else
    best_model.* and parent.*). custom_constraints and custom_objectives are the
    user-defined functions of library_objectives.
    """

    def __init__(self, is_train_proxy=True, is_train=True, max_depth_father=3, max_depth=6, check_hw=True,
                 params_thr=None, flops_thr=None, flash_thr=None, ram_thr=None, max_tens_thr=None,
                 n_generations=3, n_child=4, n_mutations=1, partial_save_steps=1,
                 smart_start=True, is_random_walk=False, nas_saver_name="NAS_logger", partial_saver_name=None,
                 preloaded_data=None, use_full_training=False, *,
                 run_dir=None, logs_dir=os.path.join(PROJECT_DIR, "logs"),
                 num_selected_folds=2, max_attempts=200,
                 filters_choices=(4, 8, 16, 32, 64), kernel_size_choices=(3, 5, 7, 9),
                 stride_choices=(1, 2), pool_size_choices=(2, 3, 4), activation_choices=ACTIVATIONS,
                 head_choices=HEADS, dropout_min=0.05, dropout_max=0.3,
                 epochs=15, batch_size=64, patience=5, learning_rate=1e-3, seed=0, verbose=0,
                 deploy_precision="int8", max_failures_in_a_row=10,
                 search_strategy="mutation", population_size=6, n_elites=2, tournament_size=2,
                 crossover_rate=0.9, objectives=("val_accuracy",), latency_thr=None, clock_mhz=80,
                 flops_per_cycle=1.0, time_budget_s=None, save_pareto_models=False,
                 custom_constraints=None, custom_objectives=None):
        check_search_parameters(locals())
        if preloaded_data is None:
            raise ValueError("NAS needs preloaded_data: a SessionData or (X_train_val, y_train_val, X_test, y_test)")
        self.preloaded_data = SessionData.from_preloaded(preloaded_data)
        if run_dir is None:  # the original's calling convention: the run is named from nas_saver_name
            run_dir = make_run_dir(logs_dir, _run_name_from(nas_saver_name))
            print(f"NAS run folder: {display_path(run_dir)}")
        self.run_dir = run_dir
        self.models_dir = os.path.join(run_dir, "models")
        os.makedirs(self.models_dir, exist_ok=True)
        self.saved_names = {"best": "best_model", "parent": "parent"}
        if partial_saver_name:
            self.saved_names = {role: f"{partial_saver_name}_{name}" for role, name in self.saved_names.items()}
        self.log_path = os.path.join(run_dir, "nas_log.txt")
        self.records = RunRecords(run_dir)
        self.records_path = self.records.records_path
        self.pareto_path = os.path.join(run_dir, "pareto.csv")
        self.checkpoint_path = self.records.checkpoint_path
        self.is_train, self.is_train_proxy = is_train, is_train_proxy
        self.use_full_training, self.num_selected_folds = use_full_training, num_selected_folds
        self.max_depth_father, self.max_depth = max_depth_father, max_depth
        self.check_hw = check_hw
        self.thresholds = {"params_thr": params_thr, "max_tens_thr": max_tens_thr, "flops_thr": flops_thr,
                           "flash_thr": flash_thr, "ram_thr": ram_thr, "latency_thr": latency_thr}
        self.custom_constraints = dict(custom_constraints or {})
        self.clock_mhz, self.flops_per_cycle = clock_mhz, flops_per_cycle
        self.objectives = objectives_lib.Objectives(list(objectives), custom_objectives)
        # The Pareto front is over the objectives; a single objective is set against flash and RAM.
        front_names = list(objectives) if len(objectives) > 1 else list(dict.fromkeys(
            [objectives[0], "val_accuracy", "flash_size", "ram_size"]))
        self.front_objectives = objectives_lib.Objectives(front_names, custom_objectives)
        self.search_strategy = search_strategy
        self.population_size, self.n_elites = population_size, n_elites
        self.tournament_size, self.crossover_rate = tournament_size, crossover_rate
        self.time_budget_s = time_budget_s
        self.save_pareto_models = save_pareto_models
        self.n_generations, self.n_child, self.n_mutations = n_generations, n_child, n_mutations
        self.partial_save_steps = partial_save_steps
        self.smart_start, self.is_random_walk = smart_start, is_random_walk
        self.max_attempts = max_attempts
        self.max_failures_in_a_row = max_failures_in_a_row
        self.failures_in_a_row = 0
        self.stop_requested = False  # set by Ctrl-C
        self.worker = None  # the process that evaluates networks (library_worker)
        self.search_space = {"filters": list(filters_choices), "kernel_size": list(kernel_size_choices),
                             "stride": list(stride_choices), "padding": ["same", "valid"],
                             "activation": list(activation_choices),
                             "pooling": ["none", "max", "avg"], "pool_size": list(pool_size_choices)}
        self.head_choices = list(head_choices)
        self.dropout_min, self.dropout_max = dropout_min, dropout_max
        self.train_settings = {"epochs": epochs, "batch_size": batch_size, "patience": patience,
                               "learning_rate": learning_rate, "seed": seed, "verbose": verbose}
        self.deploy_precision = deploy_precision
        self.seed = seed
        # The search's own random stream: mutations do not depend on what training draws.
        self.rng = random.Random(seed)
        self.i_gen = 0
        self.n_evaluated = 0
        self.absolute_best = None
        self.best_record = None  # record of the best child so far, for the progress display
        self.generation_bar = None
        self.evaluated_keys = set()  # architecture keys of every evaluated network
        # architecture key -> the first evaluation of it: child_id, status, keras-flops count and the
        # network's state without weights (library_records.light_state; the weights are in its network file)
        self.evaluated_results = {}
        self.n_trained = 0  # networks trained (evaluated minus reused)
        self.start_time = None
        self.elapsed_before_resume = 0.0

    # ----- the loop --------------------------------------------------------
    def run_NAS(self, folds):
        """Runs the search for n_generations on the training folds.

        Returns (last parent, absolute best), both Nets with their trained weights,
        as the original toolkit does: the mutation loop's parent (the GA's and
        random search's best ranked network of the last population), and the
        network best by the first objective among every network trained.

        After every generation the run folder gets a checkpoint, and its
        summary.json, pareto.csv, best_architecture.txt, progress.png and
        tradeoff.png are brought up to date. With time_budget_s, the search ends
        after the generation in which the budget runs out, as a normal end does.
        When run_dir holds a checkpoint, the search resumes from it and continues
        exactly as an uninterrupted run would.
        Raises ConstraintError, SearchStopped; KeyboardInterrupt is logged and re-raised.
        """
        check_search_parameters({"use_full_training": self.use_full_training,
                                 "num_selected_folds": self.num_selected_folds}, n_folds=len(folds))
        self.start_time = time.perf_counter()
        self.generation_bar = tqdm(total=self.n_generations + 1, desc="generations", unit="gen", position=0)
        previous_handler = self._catch_ctrl_c()
        try:
            if self.records.has_checkpoint():
                population = self.resume_from_checkpoint()
            else:
                population = self.start(folds)
            while self.i_gen < self.n_generations and not self.time_is_up():
                self.i_gen += 1
                population = self.one_generation(population, folds)
            if self.save_pareto_models:
                self.save_front_models()
        except KeyboardInterrupt:
            self.log_message(f"\nInterrupted during generation {self.i_gen}; every file up to the last "
                             f"finished generation is saved. To continue: resume_from={self.run_dir}")
            raise
        finally:
            self.generation_bar.close()
            if self.worker is not None:
                self.worker.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        self.log_summary()
        return population[0], self.absolute_best

    def _catch_ctrl_c(self):
        """Makes Ctrl-C stop the search once the network in training is recorded.

        A KeyboardInterrupt raised at an arbitrary point can be swallowed (inside
        a finalizer during garbage collection) or cut a write short, so the first
        Ctrl-C only asks; the search stops at the next safe point. A second Ctrl-C
        stops at once. Returns the handler to restore (None off the main thread).
        """
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signal_number, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            tqdm.write("Ctrl-C: stopping once the network in training is recorded (Ctrl-C again: at once).")

        return signal.signal(signal.SIGINT, request_stop)

    def time_is_up(self):
        """True when time_budget_s is set and spent (logged once)."""
        if self.time_budget_s is None or self.elapsed_seconds() < self.time_budget_s:
            return False
        self.log_message(f"\nTime budget of {self.time_budget_s} s spent after generation {self.i_gen} "
                         f"({self.elapsed_seconds():.0f} s): the search ends here.")
        return True

    def one_generation(self, population, folds):
        """One generation of the search strategy. Returns the next population."""
        if self.search_strategy == "ga":
            return self.one_ga_step(population, folds)
        if self.search_strategy == "random":
            return self.one_random_step(population, folds)
        return [self.one_nas_step(population[0], folds)]

    def start(self, folds):
        """Logs the set-up, evaluates generation 0 (the initial parent, or the initial
        population of the GA and of random search). Returns the population."""
        if os.path.exists(self.records_path):  # a run killed before its first checkpoint
            self.records.remove()
            self.log_message("\n== Started again: the run had no finished generation ==")
        self.log_message(f"NAS run in {display_path(self.run_dir)}")
        self.log_message(f"Data: {len(self.preloaded_data.X_train)} training and "
                         f"{len(self.preloaded_data.X_test)} test samples of length "
                         f"{self.preloaded_data.input_shape[0]}, {self.preloaded_data.num_classes} classes, "
                         f"{len(folds)} folds.")
        self.log_message("Thresholds: " + ", ".join(
            f"{name} = {value if value is not None else 'none'}" for name, value in self.thresholds.items())
            + ("" if self.check_hw else " (not checked: check_hw is False)")
            + f"; flash and RAM for the {self.deploy_precision} deployment; latency at {self.clock_mhz} MHz, "
              f"{self.flops_per_cycle} FLOPs per cycle.")
        if self.custom_constraints:
            self.log_message("User-defined constraints: " + ", ".join(self.custom_constraints) + ".")
        directions = ", ".join(f"{name} ({direction})" for name, direction in self.objectives.directions.items())
        self.log_message(f"Search strategy: {self.search_strategy}; objectives: {directions}; Pareto front over "
                         + ", ".join(self.front_objectives.names) + ".")
        if self.search_strategy != "mutation":
            return self.start_population(folds)
        parent = self.initial_parent()
        self.check_objectives_on(parent)
        self.log_message("\n== Generation 0: the initial parent ==")
        self.log_message(LOG_HEADER)
        self.train_generation([parent], folds)
        if parent.val_score is None:
            raise SearchStopped(f"the initial parent failed, so there is nothing to evolve; "
                                f"see the reason in {self.records_path}")
        self.absolute_best = parent
        score = self.fitness(parent)
        self.save_partial(parent, parent, 0, score, score)
        self.end_generation([parent], best_improved=True)
        return [parent]

    def start_population(self, folds):
        """Generation 0 of the GA and of random search: population_size new valid networks
        (the GA's start with the smart-start network when smart_start is on). Returns the
        evaluated ones, best first."""
        self.log_message(f"\n== Generation 0: the initial population of {self.population_size} ==")
        population, seen_keys = [], set()
        if self.search_strategy == "ga" and self.smart_start:
            population.append(self.initial_parent())
            seen_keys.add(population[0].architecture_key())
        max_depth = self.max_depth_father if self.search_strategy == "ga" else self.max_depth
        while len(population) < self.population_size:
            network = self.random_network(max_depth, seen_keys, "a network of the initial population")
            seen_keys.add(network.architecture_key())
            population.append(network)
        self.check_objectives_on(population[0])
        self.log_message(LOG_HEADER)
        self.train_generation(population, folds)
        population = [network for network in population if self.fitness(network) is not None]
        if not population:
            raise SearchStopped(f"every network of the initial population failed, so there is nothing to "
                                f"evolve; see the reasons in {self.records_path}")
        population = self.ranked(population)
        # The best is the best by the first objective, not the first of NSGA-II's order
        # (with several objectives that is the least crowded network of the first front).
        self.absolute_best = self.best_by_first_objective(population)
        score = self.fitness(self.absolute_best)
        self.save_partial(None, self.absolute_best, 0, score, score)
        if self.search_strategy == "ga":
            self.log_population(population)
        self.end_generation(population, best_improved=True)
        return population

    def end_generation(self, population, best_improved):
        """Checkpoints the search and refreshes the report, once a generation is complete."""
        self.save_checkpoint(population)
        self.write_front()
        self.refresh_report(best_improved)

    def save_checkpoint(self, population):
        """Writes checkpoint.pkl (atomically): where the search is, to go on from there.

        Holds the generation, the counts of evaluated and trained networks, the
        population (the mutation loop's is its parent) and the absolute best by
        their architecture and scores, and the random states of the search's
        stream, of Python and of NumPy. Weights and deployed models are in each
        network's file (library_records), written once when it finished, and the
        history is children.csv, so the checkpoint does not grow with the run.
        Training re-seeds TensorFlow from the child's number, so no TensorFlow
        state carries over from one network to the next.
        """
        self.records.save_checkpoint({
            "i_gen": self.i_gen, "n_evaluated": self.n_evaluated, "n_trained": self.n_trained,
            "search_rng": self.rng.getstate(), "python_random": random.getstate(),
            "numpy_random": np.random.get_state(),
            "population": [light_state(network.to_state()) for network in population],
            "absolute_best": light_state(self.absolute_best.to_state()),
            "best_record": self.best_record,
            "failures_in_a_row": self.failures_in_a_row, "elapsed_seconds": self.elapsed_seconds()})

    def resume_from_checkpoint(self):
        """Restores the search from checkpoint.pkl; drops records of the unfinished generation.
        Returns the population."""
        state = self.records.load_checkpoint()
        self.i_gen, self.n_evaluated = state["i_gen"], state["n_evaluated"]
        self.n_trained = state.get("n_trained", self.n_evaluated)
        self.rng.setstate(state["search_rng"])
        random.setstate(state["python_random"])
        np.random.set_state(state["numpy_random"])
        self.best_record = state["best_record"]
        self.failures_in_a_row = state["failures_in_a_row"]
        self.elapsed_before_resume = state["elapsed_seconds"]
        # Networks evaluated after the checkpoint will be evaluated again, identically.
        self.records.keep_first(self.n_evaluated)
        if state.get("version", 1) >= 2:
            self.rebuild_history()
        else:  # a checkpoint of an earlier version holds every evaluated network (and, older still, no GA)
            self.evaluated_keys = set(state["evaluated_keys"])
            for key, earlier in state.get("evaluated_results", {}).items():
                self.records.save_network(earlier["child_id"], dict(earlier, reason=""))
                self.evaluated_results[key] = dict(earlier, state=light_state(earlier["state"]))
        population = [self.network_with_weights(network_state)
                      for network_state in state.get("population", [state.get("parent")])]
        best = self.network_with_weights(state["absolute_best"])
        self.absolute_best = next((network for network in population if network.child_id == best.child_id), best)
        self.log_message(f"\n== Resumed after generation {self.i_gen} ({self.n_evaluated} networks evaluated) ==")
        if self.generation_bar is not None:  # None when steps run outside run_NAS
            self.generation_bar.update(self.i_gen + 1)
        return population

    def rebuild_history(self):
        """The evaluated architectures and their results, from children.csv (already cut to the
        checkpoint) and the network files: what resume needs to reuse results as before."""
        for row in self.records.read():
            key = architecture_key(json.loads(row["architecture"]), self.preloaded_data.input_shape)
            self.evaluated_keys.add(key)
            if row["status"] != "reused":
                result = self.records.load_network(row["child_id"])
                self.evaluated_results[key] = {"child_id": row["child_id"], "status": result["status"],
                                               "flops_keras_flops": result["flops_keras_flops"],
                                               "state": light_state(result["state"])}

    def network_with_weights(self, state):
        """The network of a (light) state, with the weights and deployed model of its
        architecture's evaluation (read from its network file)."""
        network = Net.from_state(state, self.log_path, self.preloaded_data)
        earlier = self.evaluated_results.get(network.architecture_key())
        if earlier is not None and earlier["status"] != "failed":
            network.take_results(self.records.network_state(earlier["child_id"]))
        return network

    def elapsed_seconds(self):
        """Seconds the search has run, over all its sessions."""
        return self.elapsed_before_resume + time.perf_counter() - self.start_time

    def refresh_report(self, best_improved):
        """Rewrites the run's summary and plots (and the best's layer table when it changed)."""
        if self.generation_bar is not None:  # None when steps run outside run_NAS
            self.generation_bar.update(1)
        if best_improved and self.absolute_best.trained:
            report.write_best_architecture(self.run_dir, self.absolute_best)
        report.write_summary(self.run_dir, self.elapsed_seconds(), self.i_gen)
        report.plot_progress(self.run_dir)
        report.plot_tradeoff(self.run_dir, self.thresholds["flash_thr"], self.thresholds["ram_thr"])

    def one_nas_step(self, parent, folds):
        """One generation: make children, train them, select the next parent. Returns it."""
        self.log_message(f"\n== Generation {self.i_gen} of {self.n_generations} ==")
        child_set = self.new_generation(parent, self.preloaded_data)
        self.log_message(LOG_HEADER)
        gen_per, test_metrics_list = self.train_generation(child_set, folds)
        best_child, gen_best_score = self.best_child_selection(child_set, gen_per, test_metrics_list)
        if best_child is None:
            self.log_message("Every child failed; the parent stays.")
            self.end_generation([parent], best_improved=False)
            return parent
        parent_score = self.fitness(parent)
        if self.is_random_walk or gen_best_score > parent_score:
            reason = "random walk" if self.is_random_walk else f"beats the parent's {parent_score:.4g}"
            self.log_message(f"Selection: {best_child.child_id} ({gen_best_score:.4g}) becomes the parent ({reason}).")
            next_parent = best_child
        else:
            self.log_message(f"Selection: the parent {parent.child_id} ({parent_score:.4g}) "
                             f"stays; the best child scored {gen_best_score:.4g}.")
            next_parent = parent
        improved = self.update_best(child_set)
        if improved or self.i_gen % self.partial_save_steps == 0:
            self.save_partial(next_parent, self.absolute_best, self.i_gen, gen_best_score,
                              self.fitness(self.absolute_best))
        self.end_generation([next_parent], best_improved=improved)
        return next_parent

    def one_ga_step(self, population, folds):
        """One generation of the population GA: n_child children of tournament-chosen
        parents (crossover, then mutation), trained; the next population is the best
        population_size of the n_elites best of the population and the children.
        Returns the next population, best first."""
        self.log_message(f"\n== Generation {self.i_gen} of {self.n_generations} (population GA) ==")
        children = self.make_offspring(population)
        self.log_message(LOG_HEADER)
        self.train_generation(children, folds)
        pool, pool_keys = [], set()
        for network in population[:self.n_elites] + children:  # the population is kept best first
            key = network.architecture_key()
            if self.fitness(network) is not None and key not in pool_keys:
                pool.append(network)
                pool_keys.add(key)
        if pool:
            next_population = self.ranked(pool)[:self.population_size]
        else:  # every child failed and no elite is kept: nothing would be left to evolve
            self.log_message("Every child failed and no elite is kept; the population stays.")
            next_population = population
        self.log_population(next_population)
        improved = self.save_best_of(children)
        self.end_generation(next_population, best_improved=improved)
        return next_population

    def save_best_of(self, children):
        """Updates the absolute best from children and saves it when it improved or
        partial_save_steps says so (the GA and random search). Returns True when it improved."""
        improved = self.update_best(children)
        scores = [score for score in map(self.fitness, children) if score is not None]
        if improved or self.i_gen % self.partial_save_steps == 0:
            self.save_partial(None, self.absolute_best, self.i_gen, max(scores, default=None),
                              self.fitness(self.absolute_best))
        return improved

    def one_random_step(self, population, folds):
        """One generation of random search: n_child uniformly random valid networks, trained.
        Returns the population unchanged (random search keeps none)."""
        self.log_message(f"\n== Generation {self.i_gen} of {self.n_generations} (random search) ==")
        seen_keys, children = set(self.evaluated_keys), []
        for _ in range(self.n_child):
            child = self.random_network(self.max_depth, seen_keys, "a random network")
            seen_keys.add(child.architecture_key())
            children.append(child)
        self.log_message(LOG_HEADER)
        self.train_generation(children, folds)
        improved = self.save_best_of(children)
        self.end_generation(population, best_improved=improved)
        return population

    # ----- objectives and ranking ---------------------------------------------
    def figures(self, net):
        """The hardware figures of net, by name (library_objectives), from the cost model."""
        return objectives_lib.hardware_figures(net, self.clock_mhz, self.flops_per_cycle)

    def scores(self, net):
        """The validation scores of net, by name (None before training or when it failed)."""
        return {"val_accuracy": net.val_score, "val_f1": (net.val_metrics or {}).get("f1")}

    def fitness(self, net):
        """The first objective of net, larger is better; None when net has no scores."""
        values = self.objectives.values(self.figures(net), self.scores(net))
        return None if values is None else self.objectives.fitness(values)

    def check_objectives_on(self, network):
        """Computes the objectives of an untrained network with made-up scores, so that a
        user-defined objective that fails stops the run before any training."""
        self.objectives.values(self.figures(network), {"val_accuracy": 0.5, "val_f1": 0.5})
        self.front_objectives.values(self.figures(network), {"val_accuracy": 0.5, "val_f1": 0.5})

    def ranked(self, networks):
        """The networks (all with scores), best first: NSGA-II's order on the objectives."""
        return [networks[i] for i in objectives_lib.nsga2_order(self.objective_vectors(networks))]

    def objective_vectors(self, networks):
        """Each network's objectives as a vector to minimise (every network must have scores)."""
        return [self.objectives.to_minimise(self.objectives.values(self.figures(net), self.scores(net)))
                for net in networks]

    def best_by_first_objective(self, networks):
        """The network with the best first objective (the first of equals); None when none has scores."""
        scored = [(score, -index) for index, score in enumerate(map(self.fitness, networks)) if score is not None]
        if not scored:
            return None
        return networks[-max(scored)[1]]

    def update_best(self, children):
        """Makes the best of children (by the first objective) the absolute best if it beats it.
        Returns True when it did."""
        best_child = self.best_by_first_objective(children)
        if best_child is None or self.fitness(best_child) <= self.fitness(self.absolute_best):
            return False
        self.absolute_best = best_child
        return True

    def log_population(self, population):
        """Logs the population, best first, with its front rank and objective values."""
        ranks, _ = objectives_lib.rank_and_crowding(self.objective_vectors(population))
        self.log_message(f"Population after generation {self.i_gen} (front rank: 0 = not dominated):")
        for net, rank in zip(population, ranks):
            values = self.objectives.values(self.figures(net), self.scores(net))
            self.log_message(f"  {net.child_id}  rank {rank}  "
                             + "  ".join(f"{name} {value:.6g}" for name, value in values.items())
                             + f"  {net.architecture_text()}")

    def train_generation(self, child_set, folds):
        """Trains (or dry-runs) each child, measures its deployed model, records it as it finishes.

        Each child is evaluated by library_net.evaluate_network in a worker
        process (library_worker), so memory stays flat over a long search. A
        child whose architecture was evaluated before is not trained again: it
        takes that evaluation's results and is recorded as "reused".
        Returns (validation scores, test metrics), one each per child. A child
        whose training diverges or raises is recorded as failed, with the reason,
        and gets None for both; the search goes on.
        """
        gen_per, test_metrics_list = [], []
        children_bar = tqdm(child_set, desc=f"generation {self.i_gen}", unit="child", position=1, leave=False)
        for child in children_bar:
            self.n_evaluated += 1
            key = child.architecture_key()
            self.evaluated_keys.add(key)
            child.child_id = f"g{self.i_gen:03d}_c{self.n_evaluated:04d}"
            child.train_settings["seed"] = self.seed * 100_003 + self.n_evaluated
            earlier = self.evaluated_results.get(key)
            if earlier is not None:
                child.take_results(self.records.network_state(earlier["child_id"]))
                child.train_seconds = 0.0
                status, flops_keras_flops = "reused", earlier["flops_keras_flops"]
                reason = f"same architecture as {earlier['child_id']}: its result, not trained again"
                if earlier["status"] == "failed":
                    child.val_score = child.test_metrics = None
                    reason += f" ({earlier['child_id']} failed)"
            else:
                status, reason, flops_keras_flops = self._evaluate(child, folds)
                self.n_trained += 1
                state = child.to_state()
                self.records.save_network(child.child_id, {"state": state, "status": status, "reason": reason,
                                                           "flops_keras_flops": flops_keras_flops})
                self.evaluated_results[key] = {"child_id": child.child_id, "status": status,
                                               "state": light_state(state), "flops_keras_flops": flops_keras_flops}
            gen_per.append(child.val_score)
            test_metrics_list.append(child.test_metrics)
            self._record_child(child, status, reason, flops_keras_flops)
            children_bar.set_postfix_str(self._best_postfix(), refresh=True)
            if self.stop_requested:
                raise KeyboardInterrupt
            if status == "reused":
                continue
            self.failures_in_a_row = self.failures_in_a_row + 1 if status == "failed" else 0
            if self.failures_in_a_row >= self.max_failures_in_a_row:
                message = (f"{self.failures_in_a_row} networks in a row failed (the last: {reason}); "
                           f"stopping. Every failure and its reason is in {self.records_path}")
                self.log_message(message)
                raise SearchStopped(message)
        children_bar.close()
        return gen_per, test_metrics_list

    def _evaluate(self, child, folds):
        """Trains and measures child in the worker; child takes the results.
        Returns (status, reason, keras-flops count)."""
        task = {"architecture": child.architecture(), "train_settings": child.train_settings,
                "deploy_precision": child.deploy_precision, "use_full_training": self.use_full_training,
                "is_train": self.is_train if self.use_full_training else self.is_train_proxy,
                "num_selected_folds": self.num_selected_folds}
        try:
            result = self._worker(folds).evaluate(task)
            child.take_results(result["state"])
            status, reason, flops_keras_flops = result["status"], result["reason"], result["flops_keras_flops"]
        except WorkerDied as error:
            status, reason, flops_keras_flops = "failed", f"WorkerDied: {error}", None
        if status == "failed":
            child.val_score = child.test_metrics = None
        return status, reason, flops_keras_flops

    def _worker(self, folds):
        """The evaluation worker for these folds (started on first use, replaced for other folds)."""
        if self.worker is None or self.worker.folds is not folds:
            if self.worker is not None:
                self.worker.close()
            self.worker = EvaluationWorker(self.preloaded_data, folds, quiet=self.train_settings["verbose"] == 0)
        return self.worker

    def _best_postfix(self):
        """The bars' summary: best validation score so far and the best model's figures."""
        if self.best_record is None:
            return "best -"
        return (f"best {self.best_record['val_accuracy']:.4f}: flash {self.best_record['flash_size']} B, "
                f"RAM {self.best_record['ram_size']} B, {self.best_record['flops']} FLOPs")

    def best_child_selection(self, child_set, gen_per, test_metrics_list):
        """The child with the best first objective (the validation accuracy by default;
        test metrics are never looked at).

        Returns (best child, its score), or (None, None) when every child failed.
        """
        if self.objectives.names[0] != "val_accuracy":  # gen_per holds validation accuracies
            gen_per = [None if score is None else self.fitness(child) for child, score in zip(child_set, gen_per)]
        scored = [(score, index) for index, score in enumerate(gen_per) if score is not None]
        if not scored:
            return None, None
        best_score, best_index = max(scored, key=lambda pair: (pair[0], -pair[1]))
        return child_set[best_index], best_score

    # ----- making children ---------------------------------------------------
    def initial_parent(self):
        """The smart-start parent when it is on and meets the thresholds, else a random valid one."""
        if self.smart_start:
            blocks = [Block(**settings, dropout_rate=0.0) for settings in SMART_START_BLOCKS]
            parent = self._new_net(blocks, SMART_START_HEAD)
            violations = self.hw_violations(parent)
            if not violations:
                self.log_message("Initial parent: the smart-start network.")
                return parent
            self.log_message("The smart-start network breaks " + ", ".join(violations)
                             + "; starting from a random valid network instead.")
        parent = self.random_network(self.max_depth_father, (), "a random initial parent")
        self.log_message("Initial parent: a random network.")
        return parent

    def random_network(self, max_depth, seen_keys, what):
        """A random network meeting the thresholds: depth uniform in 1..max_depth, every
        setting and the head uniform over the search space; unlike seen_keys when the
        attempts allow. Raises ConstraintError (naming `what`) after max_attempts."""
        def random_candidate():
            depth = self.rng.randint(1, max_depth)
            blocks = [self.generate_random_block(None, block_index, depth) for block_index in range(depth)]
            return self._new_net(blocks, self.rng.choice(self.head_choices))

        return self.draw_valid_network(random_candidate, seen_keys, what)

    def new_generation(self, parent, preloaded_data):
        """n_child children of `parent`, each meeting the thresholds (with check_hw) and,
        where the search space allows, unlike every network evaluated so far and each other."""
        seen_keys = self.evaluated_keys | {parent.architecture_key()}
        child_set = []
        for _ in range(self.n_child):
            child = self.mutate_network_and_control(parent, preloaded_data, seen_keys)
            seen_keys.add(child.architecture_key())
            child_set.append(child)
        return child_set

    def mutate_network_and_control(self, parent, preloaded_data, seen_keys=()):
        """A mutant of parent that meets every threshold; checked without building Keras models.

        seen_keys: architecture keys to avoid (training the same network twice
        teaches nothing); a valid repeat is returned only if nothing new is found.
        Raises ConstraintError after max_attempts tries, naming each threshold that
        no candidate met and the smallest value seen for it.
        """
        def mutant():
            child = parent
            for _ in range(self.n_mutations):
                child = self.mutate_network(child, preloaded_data)
            return child

        return self.draw_valid_network(mutant, seen_keys, f"a child of {parent.architecture_text()}")

    def draw_valid_network(self, make_candidate, seen_keys, what):
        """Calls make_candidate() until a candidate meets every threshold and constraint
        and is not in seen_keys; returns it. A valid repeat is returned only if nothing
        new is found in max_attempts tries; if no candidate is valid, raises
        ConstraintError naming `what`, each threshold or constraint no candidate met
        and the smallest value seen for it."""
        smallest_seen, valid_repeat = {}, None
        for _ in range(self.max_attempts):
            candidate = make_candidate()
            if self.hw_violations(candidate, smallest_seen):
                continue
            if candidate.architecture_key() not in seen_keys:
                return candidate
            valid_repeat = valid_repeat or candidate
        if valid_repeat is not None:
            return valid_repeat
        raise self._constraint_error(smallest_seen, what)

    def make_offspring(self, population):
        """n_child children of the population (the population GA), each meeting the
        thresholds and, where the search space allows, unlike every network evaluated."""
        seen_keys, children = set(self.evaluated_keys), []
        ranks, crowding = objectives_lib.rank_and_crowding(self.objective_vectors(population))
        for _ in range(self.n_child):
            child = self.crossover_mutate_and_control(population, ranks, crowding, seen_keys)
            seen_keys.add(child.architecture_key())
            children.append(child)
        return children

    def crossover_mutate_and_control(self, population, ranks, crowding, seen_keys):
        """A child meeting every threshold: two parents chosen by tournament, crossed over
        (with probability crossover_rate, else the first parent is copied), then mutated
        n_mutations times. Like mutate_network_and_control, a valid repeat of an evaluated
        network is returned only when nothing new is found; raises ConstraintError."""
        def offspring():
            first = population[self.tournament_selection(ranks, crowding)]
            second = population[self.tournament_selection(ranks, crowding)]
            if self.rng.random() < self.crossover_rate:
                child = self.crossover(first, second)
            else:
                child = self._new_net([block.copy(layer_weights=None) for block in first.block_list], first.head)
                child.parent_ids = (first.child_id,)
            for _ in range(self.n_mutations):
                child = self.mutate_network(child, self.preloaded_data)
            return child

        return self.draw_valid_network(offspring, seen_keys, "a child of the population")

    def tournament_selection(self, ranks, crowding):
        """Index of the winner of tournament_size members drawn at random (with replacement):
        the lowest front rank, then the largest crowding distance, then the first drawn."""
        drawn = [self.rng.randrange(len(ranks)) for _ in range(self.tournament_size)]
        return min(drawn, key=lambda i: (ranks[i], -crowding[i]))

    def crossover(self, first, second):
        """One-point crossover at block boundaries: the first blocks of `first`, then the
        last blocks of `second` (1..max_depth blocks in all), the head of either.
        The blocks are re-chained on the input by correct_blocklist. Returns a new Net."""
        for _ in range(self.max_attempts):
            cut_first = self.rng.randint(0, len(first.block_list))
            cut_second = self.rng.randint(0, len(second.block_list))
            blocks = first.block_list[:cut_first] + second.block_list[cut_second:]
            if 1 <= len(blocks) <= self.max_depth:
                break
        else:  # every draw was empty or too deep: keep the first parent's blocks
            blocks = first.block_list
        child = self._new_net([block.copy(layer_weights=None) for block in blocks],
                              self.rng.choice([first.head, second.head]))
        child.mutation = "crossover"
        child.parent_ids = (first.child_id, second.child_id)
        return child

    def mutate_network(self, parent, preloaded_data):
        """One mutation of parent: add, remove or change a block, or switch the head. Returns a new Net."""
        blocks = [block.copy(layer_weights=None) for block in parent.block_list]
        actions = ["change"]
        if len(blocks) < self.max_depth:
            actions.append("add")
        if len(blocks) > 1:
            actions.append("remove")
        if len(self.head_choices) > 1:
            actions.append("switch_head")
        action = self.rng.choice(actions)
        head = parent.head
        if action == "add":
            blocks = self.add_block(blocks)
        elif action == "remove":
            blocks = self.remove_block(blocks)
        elif action == "change":
            blocks = self.change_block(blocks)
        else:
            head = self.rng.choice([choice for choice in self.head_choices if choice != parent.head])
        child = self._new_net(blocks, head, preloaded_data)
        # Chained mutations (n_mutations > 1) of a not yet evaluated mutant read "add+change".
        chained = parent.child_id is None and parent.mutation
        child.mutation = f"{parent.mutation}+{action}" if chained else action
        child.parent_ids = parent.parent_ids if parent.child_id is None else (parent.child_id,)
        return child

    def generate_random_block(self, input_size, block_index, current_architecture_depth):
        """A block with random settings from the search space, placed at block_index."""
        settings = {name: self.rng.choice(choices) for name, choices in self.search_space.items()}
        block = Block(**settings, dropout_rate=self._dropout_rate(block_index, current_architecture_depth),
                      input_size=input_size, input_channels=1, block_index=block_index)
        return block

    def remove_block(self, parent_blocks):
        index = self.rng.randrange(len(parent_blocks))
        return parent_blocks[:index] + parent_blocks[index + 1:]

    def change_block(self, parent_blocks):
        """Redraws one setting of one block."""
        index = self.rng.randrange(len(parent_blocks))
        setting = self.rng.choice(sorted(self.search_space))
        choices = [c for c in self.search_space[setting] if c != getattr(parent_blocks[index], setting)]
        if not choices:
            return list(parent_blocks)
        changed = parent_blocks[index].copy(**{setting: self.rng.choice(choices)})
        return parent_blocks[:index] + [changed] + parent_blocks[index + 1:]

    def add_block(self, parent_blocks):
        index = self.rng.randint(0, len(parent_blocks))
        new_block = self.generate_random_block(None, index, len(parent_blocks) + 1)
        return parent_blocks[:index] + [new_block] + parent_blocks[index:]

    def _dropout_rate(self, block_index, depth):
        # Deeper blocks see more abstract features and overfit more: dropout grows with depth.
        if depth <= 1:
            return self.dropout_min
        return round(self.dropout_min + (self.dropout_max - self.dropout_min) * block_index / (depth - 1), 3)

    def recalculate_dropout_rates(self, blocks):
        """Sets each block's dropout from its depth: dropout_min at the first, dropout_max at the last."""
        return [block.copy(dropout_rate=self._dropout_rate(i, len(blocks))) for i, block in enumerate(blocks)]

    def correct_blocklist(self, child_blocks):
        """Re-chains blocks on the data's input: each block's input is its predecessor's
        output, indices follow the order; what a short input cannot build as asked is
        built adjusted (Block.calculate_output_size). Net does this for every network."""
        return chain_blocks(child_blocks, self.preloaded_data.input_shape)

    def _new_net(self, blocks, head, preloaded_data=None):
        blocks = self.recalculate_dropout_rates(blocks)  # Net chains them on the input (correct_blocklist)
        return Net(blocks, self.log_path, preloaded_data or self.preloaded_data, head=head,
                   train_settings=self.train_settings, deploy_precision=self.deploy_precision)

    # ----- hardware constraints ---------------------------------------------
    def hw_violations(self, net, smallest_seen=None):
        """Names of the thresholds and user-defined constraints net breaks, with its figure
        (empty when check_hw is off).

        smallest_seen: a dict that keeps, per threshold, the smallest figure seen
        so far, and per constraint whether any candidate passed (for the message
        when no candidate meets them).
        """
        if not self.check_hw:
            return []
        figures = self.figures(net)
        violations = []
        for name, figure_name in HW_THRESHOLDS.items():
            limit, figure = self.thresholds[name], figures[figure_name]
            if limit is None:
                continue
            if smallest_seen is not None:
                smallest_seen[name] = min(smallest_seen.get(name, figure), figure)
            if figure > limit:
                violations.append(f"{name} ({figure_name} {figure} > {limit})")
        for name, constraint in self.custom_constraints.items():
            passed = objectives_lib.check_constraint(name, constraint, figures)
            if smallest_seen is not None:
                smallest_seen[name] = smallest_seen.get(name, False) or passed
            if not passed:
                violations.append(f"constraint {name}")
        return violations

    def _constraint_error(self, smallest_seen, what):
        never_met = {name: value for name, value in smallest_seen.items()
                     if (value is False if name in self.custom_constraints else value > self.thresholds[name])}
        shown = never_met or smallest_seen

        def describe(name, value):
            if name in self.custom_constraints:
                return f"constraint {name}: {'passed by some candidate' if value else 'failed by every candidate'}"
            return f"{name} = {self.thresholds[name]}: smallest {HW_THRESHOLDS[name]} seen {value}"

        details = "; ".join(describe(name, value) for name, value in shown.items())
        if never_met:
            summary = f"No candidate met: {details}."
        else:
            summary = f"Each threshold was met by some candidate, never all at once: {details}."
        message = (f"No candidate for {what} met the hardware thresholds in {self.max_attempts} attempts. "
                   f"{summary} Raise them or shrink the search space.")
        self.log_message(message)
        return ConstraintError(message)

    # ----- saving and the log ---------------------------------------------
    def save_partial(self, parent, best_network, i_gen, gen_best_score, absolute_best_score):
        """Saves the current parent (None: no parent, the GA and random search) and the
        absolute best (trained weights only) under models/."""
        saved = []
        for net, name in ((best_network, self.saved_names["best"]), (parent, self.saved_names["parent"])):
            if net is not None and net.trained:
                net.save_keras(os.path.join(self.models_dir, f"{name}.keras"))
                net.save_deployed(os.path.join(self.models_dir, f"{name}_{net.deploy_precision}"))
                write_atomically(os.path.join(self.models_dir, f"{name}.json"),
                                 json.dumps(dict(net.to_record(), child_id=net.child_id, generation=i_gen), indent=2))
                saved.append(f"{name} ({net.child_id})")
        gen_text = f"{gen_best_score:.4g}" if gen_best_score is not None else "none"
        self.log_message(f"Saved after generation {i_gen}: {', '.join(saved) or 'nothing (dry run: no trained weights)'}; "
                         f"generation best {gen_text}, absolute best {absolute_best_score:.4g} "
                         f"({self.objectives.names[0]}).")

    def front_members(self):
        """The Pareto front over front_objectives of every trained network: a list of
        (result of evaluated_results, objective values), best first objective first."""
        candidates = []
        for earlier in self.evaluated_results.values():
            network = Net.from_state(earlier["state"], self.log_path, self.preloaded_data)
            values = self.front_objectives.values(self.figures(network), self.scores(network))
            if values is not None and earlier["status"] != "failed":
                candidates.append((earlier, network, values))
        front = objectives_lib.first_front([self.front_objectives.to_minimise(values)
                                            for _, _, values in candidates])
        members = [candidates[i] for i in front]
        return sorted(members, key=lambda member: self.front_objectives.to_minimise(member[2]))

    def write_front(self):
        """Writes pareto.csv (atomically): the networks no other trained network beats in
        every objective of front_objectives, with their figures, scores and architecture
        (each network's own row of children.csv, objective values first)."""
        fields = list(dict.fromkeys([*self.front_objectives.names, *PARETO_FIELDS]))
        records = {record["child_id"]: record for record in self.records.read()}
        rows = [dict(values, **records[earlier["child_id"]]) for earlier, _, values in self.front_members()]
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.pareto_path, lines.getvalue())
        return rows

    def save_front_models(self):
        """Saves every network of the Pareto front under models/pareto/ (Keras, TFLite, C header)."""
        folder = os.path.join(self.models_dir, "pareto")
        os.makedirs(folder, exist_ok=True)
        saved = []
        for earlier, network, _ in self.front_members():
            if network.trained:
                network.take_results(self.records.network_state(earlier["child_id"]))
                network.save_keras(os.path.join(folder, f"{earlier['child_id']}.keras"))
                network.save_deployed(os.path.join(folder, f"{earlier['child_id']}_{network.deploy_precision}"))
                saved.append(earlier["child_id"])
        self.log_message(f"Saved the Pareto front's models in {folder}: {', '.join(saved) or 'none (dry run)'}.")

    def _record_child(self, child, status, reason, flops_keras_flops):
        n_params, max_tens, flops, flash_size, ram_size = child.hw_measures()
        val, test = child.val_metrics or {}, child.test_metrics or {}
        deployed = child.deployed or {}
        record = {"child_id": child.child_id, "generation": self.i_gen, "status": status,
                  "mutation": child.mutation or "start", "parents": " ".join(child.parent_ids),
                  "latency_ms": self.figures(child)["latency_ms"],
                  "depth": len(child.block_list), "head": child.head, "n_params": n_params,
                  "max_tens": max_tens, "flops": flops, "flops_keras_flops": flops_keras_flops,
                  "flash_size": flash_size, "flash_measured": deployed.get("flash_bytes"),
                  "ram_size": ram_size, "ram_measured": deployed.get("arena_bytes"),
                  "ram_activations_measured": deployed.get("arena_activations"),
                  "ram_persistent_measured": deployed.get("arena_persistent"),
                  "val_accuracy": val.get("accuracy"), "val_f1": val.get("f1"),
                  "test_accuracy": test.get("accuracy"), "test_f1": test.get("f1"),
                  "deployed_test_accuracy": deployed.get("test_accuracy"),
                  "train_seconds": round(child.train_seconds or 0.0, 2), "reason": reason,
                  "adjustments": child.adjustments_text(), "architecture_text": child.architecture_text(),
                  "architecture": json.dumps(child.architecture(), separators=(",", ":"))}
        self.records.append(record)
        score = "-" if child.val_score is None else f"{child.val_score:.4f}"
        flash_text = f"{flash_size}/{deployed.get('flash_bytes', '-')}"
        ram_text = f"{ram_size}/{deployed.get('arena_bytes', '-')}"
        self.log_message(LOG_ROW.format(child.child_id, status, record["mutation"][:14], score, n_params, flops,
                                        flash_text, ram_text, record["train_seconds"], child.architecture_text())
                         + (f"  ({reason})" if reason else ""))
        if flops_keras_flops is not None and flops_keras_flops != flops:
            self.log_message(f"  note: keras-flops counts {flops_keras_flops} FLOPs, the cost model {flops}.")
        if child.val_score is not None and (self.best_record is None
                                            or child.val_score > self.best_record["val_accuracy"]):
            self.best_record = record
        best_text = "-" if self.best_record is None else f"{self.best_record['val_accuracy']:.4f}"
        elapsed = self.elapsed_seconds()
        tqdm.write(f"[{child.child_id}] {status:<7} params {n_params:>7}  FLOPs {flops:>10}  flash {flash_size:>7} B  "
                   f"RAM {ram_size:>7} B  val {score:>6}  {record['train_seconds']:>5.1f} s  "
                   f"best {best_text}  elapsed {elapsed:6.0f} s")

    def log_summary(self):
        best = self.absolute_best
        n_params, max_tens, flops, flash_size, ram_size = best.hw_measures()
        test, deployed = best.test_metrics, best.deployed or {}
        self.log_message("\n== Result ==")
        self.log_message(f"Evaluated {self.n_evaluated} networks ({self.n_trained} trained, "
                         f"{self.n_evaluated - self.n_trained} reused) in {self.elapsed_seconds():.0f} s "
                         f"over {self.i_gen} generations ({self.search_strategy}).")
        self.log_message(f"Absolute best: {best.child_id}, {best.architecture_text()}")
        self.log_message(f"  params {n_params}, max tensor {max_tens} elements, FLOPs {flops}")
        self.log_message(f"  validation accuracy {best.val_score:.4f} (mean over the trained folds)")
        self.log_message(f"  test accuracy {test['accuracy']:.4f}, precision {test['precision']:.4f}, "
                         f"recall {test['recall']:.4f}, F1 {test['f1']:.4f} (Keras, float32)")
        if deployed:
            self.log_message(
                f"  deployed as {best.deploy_precision} TFLite: flash {deployed['flash_bytes']} B measured "
                f"({flash_size} B estimated), TFLM arena {deployed['arena_bytes']} B measured "
                f"= {deployed['arena_activations']} activations + {deployed['arena_persistent']} persistent "
                f"({ram_size} B estimated)")
            self.log_message(f"  test accuracy of the deployed model run by TFLM: {deployed['test_accuracy']:.4f}")
        if best.trained:
            name = self.saved_names["best"]
            self.log_message(f"  saved as {display_path(os.path.join(self.models_dir, name + '.keras'))} and "
                             f"{name}_{best.deploy_precision}.tflite / .h beside it")
        self.log_message(f"Pareto front over {', '.join(self.front_objectives.names)}: "
                         f"{len(self.front_members())} networks, in {display_path(self.pareto_path)}")

    def log_message(self, message, mode="a"):
        """Writes a line to the NAS log file (mode 'a' appends, 'w' starts it anew)."""
        with open(self.log_path, mode) as log_file:
            log_file.write(message + "\n")


def _run_name_from(nas_saver_name):
    """A run folder name from the original toolkit's nas_saver_name (a log file name or path)."""
    stem = os.path.splitext(os.path.basename(str(nas_saver_name)))[0]
    return re.sub(r"[^\w.-]", "_", stem) or "nas"
