"""The search: one loop over a strategy, an evaluator and the run's records.

    generation 0:  the strategy's first networks -> evaluated -> its first population
    each generation: the strategy proposes children (library_strategies), each
                   checked against the thresholds before any training
                   (library_search_space); the evaluator trains and measures them,
                   several at once (library_evaluator); they are recorded in id
                   order (library_records); the strategy selects who survives;
                   the best is saved; a checkpoint is written.
Every network gets its id and training seed when it is proposed, so the result
does not depend on how many networks train at once. An architecture already
evaluated is never trained again (its result is reused). NAS keeps every
method of the original specification, most as short delegations.
"""
import importlib.util
import inspect
import json
import os
import random
import re
import signal
import threading
import time

import numpy as np
from tqdm import tqdm

import library_fold_tasks as fold_tasks_lib
import library_halving as halving_lib
import library_objectives as objectives_lib
import library_report as report
from library_block import ACTIVATIONS, DEPLOYED_COST
from library_config import display_path, hold_run_folder, make_run_dir
from library_device import TargetDevice, check_profile
from library_encoding import ENCODINGS, check_byte_data
from library_evaluator import EXECUTORS, make_evaluator
from library_load_and_split_data import SessionData, data_fingerprint
from library_net import HEADS, Net, architecture_key
from library_records import LOG_HEADER, PARETO_FIELDS, RunRecords, child_record, light_state, log_row
from library_search_space import HW_THRESHOLDS, ConstraintError, Constraints, SearchSpace
from library_strategies import STRATEGIES, SearchStopped, best_child_selection

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
SEARCH_STRATEGIES = tuple(STRATEGIES)
__all__ = ["NAS", "ConstraintError", "SearchStopped", "check_search_parameters", "search_parameter_names"]


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
    for name in ("n_workers", "threads_per_worker"):
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{name} must be an integer >= 1, got {value!r}")
    if parameters["executor"] not in EXECUTORS:
        problems.append(f"executor must be one of {EXECUTORS}, got {parameters['executor']!r}")
    elif parameters["executor"] == "ray" and importlib.util.find_spec("ray") is None:
        problems.append("executor 'ray' needs the ray package: pip install -r requirements.txt")
    if parameters["ray_address"] is not None and not (isinstance(parameters["ray_address"], str)
                                                      and parameters["ray_address"].strip()):
        problems.append(f"ray_address must be None (start Ray here), 'auto' or 'host:port', "
                        f"got {parameters['ray_address']!r}")
    if parameters["search_strategy"] not in SEARCH_STRATEGIES:
        problems.append(f"search_strategy must be one of {SEARCH_STRATEGIES}, got {parameters['search_strategy']!r}")
    if (not problems and parameters["search_strategy"] == "ga"
            and not parameters["n_elites"] <= parameters["population_size"] <= parameters["n_elites"] + parameters["n_child"]):
        problems.append(f"the population GA needs n_elites ({parameters['n_elites']}) <= population_size "
                        f"({parameters['population_size']}) <= n_elites + n_child ({parameters['n_child']}), "
                        f"so that elites and children can fill the next population")
    for name in ("clock_mhz", "flops_per_cycle", "power_mw"):
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{name} must be a positive number, got {value!r}")
    custom_devices = parameters["custom_devices"]
    if custom_devices is not None and not isinstance(custom_devices, dict):
        problems.append(f"custom_devices must be a dict name -> device profile, got {custom_devices!r}")
    elif not problems:
        profile_problems = [problem for name, profile in (custom_devices or {}).items()
                            for problem in check_profile(name, profile)]
        problems += profile_problems
        try:
            if not profile_problems:  # (a bad profile of target_device is named once, above)
                TargetDevice.named(parameters["target_device"], custom_devices, parameters["clock_mhz"],
                                   parameters["flops_per_cycle"], parameters["power_mw"])
        except ValueError as error:
            problems.append(str(error))
    value = parameters["seed"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 32:
        problems.append(f"seed must be an integer from 0 to 2**32 - 1, got {value!r}")
    if parameters["verbose"] not in (0, 1, 2) or isinstance(parameters["verbose"], bool):
        problems.append(f"verbose must be 0, 1 or 2, got {parameters['verbose']!r}")
    value = parameters["time_budget_s"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        problems.append(f"time_budget_s must be a positive number of seconds or None, got {value!r}")
    value = parameters["halving_eta"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 1):
        problems.append(f"halving_eta must be a number > 1 (3 keeps the best third at each rung) or None, "
                        f"got {value!r}")
    value = parameters["min_epochs"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"min_epochs must be an integer >= 1, got {value!r}")
    elif parameters["halving_eta"] is not None and isinstance(parameters["epochs"], int) and value > parameters["epochs"]:
        problems.append(f"min_epochs ({value}) must not exceed epochs ({parameters['epochs']})")
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
    for name in ("filters_choices", "kernel_size_choices", "stride_choices", "pool_size_choices",
                 "embedding_dim_choices", "input_length_choices"):
        values = parameters[name]
        if name == "input_length_choices" and values is None:  # the data's full length
            continue
        if (not isinstance(values, (list, tuple)) or not values
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
            problems.append(f"{name} must be a non-empty list of integers >= 1"
                            f"{' (or None)' if name == 'input_length_choices' else ''}, got {values!r}")
    encodings = parameters["input_encoding_choices"]
    if (not isinstance(encodings, (list, tuple)) or not encodings or any(e not in ENCODINGS for e in encodings)
            or len(set(encodings)) < len(encodings)):
        problems.append(f"input_encoding_choices must be a non-empty list of distinct encodings from "
                        f"{list(ENCODINGS)}, got {encodings!r}")
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
                "custom_constraints", "custom_objectives", "custom_devices", "class_names"}
    return set(inspect.signature(NAS.__init__).parameters) - plumbing


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
    user-defined functions of library_objectives; custom_devices, device profiles
    (library_device) that target_device may name. class_names: a name per label, for the
    per-class results (None: the labels' numbers).
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
                 executor="local", n_workers=2, threads_per_worker=1, ray_address=None,
                 target_device="generic", power_mw=30.0, energy_thr=None, halving_eta=None, min_epochs=3,
                 input_encoding_choices=("embedding", "scaled"), embedding_dim_choices=(4, 8, 16), input_length_choices=None,
                 custom_constraints=None, custom_objectives=None, custom_devices=None, class_names=None):
        check_search_parameters(locals())
        if preloaded_data is None:
            raise ValueError("NAS needs preloaded_data: a SessionData or (X_train_val, y_train_val, X_test, y_test)")
        self.preloaded_data = SessionData.from_preloaded(preloaded_data)
        if run_dir is None:  # the original's calling convention: the run is named from nas_saver_name
            run_dir = make_run_dir(logs_dir, _run_name_from(nas_saver_name))
            print(f"NAS run folder: {display_path(run_dir)}")
        self.run_dir = run_dir
        self.records = RunRecords(run_dir)
        self.log_path, self.records_path = self.records.log_path, self.records.records_path
        self.pareto_path, self.models_dir = self.records.pareto_path, self.records.models_dir
        self.saved_names = {"best": "best_model", "parent": "parent"}
        self.class_names = list(class_names or map(str, range(self.preloaded_data.num_classes)))
        if partial_saver_name:
            self.saved_names = {role: f"{partial_saver_name}_{name}" for role, name in self.saved_names.items()}
        self.is_train, self.is_train_proxy = is_train, is_train_proxy
        self.use_full_training, self.num_selected_folds = use_full_training, num_selected_folds
        self.max_depth = max_depth
        self.thresholds = {"params_thr": params_thr, "max_tens_thr": max_tens_thr, "flops_thr": flops_thr,
                           "flash_thr": flash_thr, "ram_thr": ram_thr, "latency_thr": latency_thr,
                           "energy_thr": energy_thr}
        self.device = TargetDevice.named(target_device, custom_devices, clock_mhz, flops_per_cycle, power_mw)
        self.constraints = Constraints(self.thresholds, custom_constraints, check_hw, self.device)
        # latency and energy are shown (log, plot) where they matter to this search
        self.device_figures_shown = [figure for threshold, figure in HW_THRESHOLDS.items()
                                     if figure in ("latency_ms", "energy_mj")
                                     and (self.thresholds[threshold] is not None or figure in objectives)]
        self.ranking = objectives_lib.Ranking(objectives_lib.Objectives(list(objectives), custom_objectives),
                                              self.constraints.figures)
        # The Pareto front is over the objectives; a single objective is set against flash and RAM.
        front_names = list(objectives) if len(objectives) > 1 else list(dict.fromkeys(
            [objectives[0], "val_accuracy", "flash_size", "ram_size"]))
        self.front_ranking = objectives_lib.Ranking(objectives_lib.Objectives(front_names, custom_objectives),
                                                    self.constraints.figures)
        self.search_strategy, self.time_budget_s = search_strategy, time_budget_s
        self.save_pareto_models = save_pareto_models
        self.n_generations = n_generations
        self.partial_save_steps = partial_save_steps
        self.max_failures_in_a_row = max_failures_in_a_row
        self.failures_in_a_row = 0
        self.stop_requested = False  # set by Ctrl-C
        self.executor_settings = {"executor": executor, "n_workers": n_workers,
                                  "threads_per_worker": threads_per_worker, "ray_address": ray_address,
                                  "quiet": verbose == 0}
        self.evaluator = None  # library_evaluator's, started on first use
        self.train_settings = {"epochs": epochs, "batch_size": batch_size, "patience": patience,
                               "learning_rate": learning_rate, "seed": seed, "verbose": verbose}
        self.deploy_precision = deploy_precision
        self.halving_eta = halving_eta
        # successive halving's epoch budget per rung (None: every network gets the full budget)
        self.rung_budgets = None if halving_eta is None else halving_lib.rung_epochs(min_epochs, halving_eta, epochs)
        self.seed = seed
        # The search's own random stream: mutations do not depend on what training draws.
        self.rng = random.Random(seed)
        choices = {"filters": list(filters_choices), "kernel_size": list(kernel_size_choices),
                   "stride": list(stride_choices), "padding": ["same", "valid"],
                   "activation": list(activation_choices), "pooling": ["none", "max", "avg"],
                   "pool_size": list(pool_size_choices)}
        input_choices = input_choices_on(self.preloaded_data, input_encoding_choices, embedding_dim_choices,
                                         input_length_choices)
        self.space = SearchSpace(choices, head_choices, max_depth, dropout_min, dropout_max, n_mutations,
                                 max_attempts, self.constraints, self.rng, self.preloaded_data, self.log_path,
                                 self.train_settings, deploy_precision, input_choices)
        strategy_settings = dict(n_child=n_child, smart_start=smart_start, max_depth_father=max_depth_father,
                                 population_size=population_size)
        strategy_settings.update({"mutation": dict(is_random_walk=is_random_walk), "random": {},
                                  "ga": dict(n_elites=n_elites, tournament_size=tournament_size,
                                             crossover_rate=crossover_rate)}[search_strategy])
        self.strategy = STRATEGIES[search_strategy](self.space, self.ranking, self.log_message, **strategy_settings)
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
        Raises ConstraintError, SearchStopped; RunFolderBusy when another process
        writes to run_dir; RecordsError when run_dir's records are unreadable or its
        data or split is not this search's; KeyboardInterrupt (Ctrl-C or SIGTERM)
        is logged and re-raised.
        """
        check_search_parameters({"use_full_training": self.use_full_training,
                                 "num_selected_folds": self.num_selected_folds}, n_folds=len(folds))
        self.claim_run_folder(folds)
        self.start_time = time.perf_counter()
        self.generation_bar = tqdm(total=self.n_generations + 1, desc="generations", unit="gen", position=0)
        previous_handlers = self._catch_stop_signals()
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
        except ConstraintError as error:
            self.log_message(str(error))
            raise
        except KeyboardInterrupt:
            self.log_message(f"\nInterrupted during generation {self.i_gen}; every file up to the last "
                             f"finished generation is saved. To continue: resume_from={self.run_dir}")
            raise
        finally:
            self.generation_bar.close()
            if self.evaluator is not None:
                self.evaluator.close()
                self.evaluator = None
            for signal_number, handler in previous_handlers.items():
                signal.signal(signal_number, handler)
        self.log_summary()
        return population[0], self.absolute_best

    def claim_run_folder(self, folds):
        """Makes this process the run folder's only writer, and checks a resumed run is
        given the data and split it was searched on (recorded in data.json at its start).
        Raises RunFolderBusy or RecordsError (which names the file) before anything in
        the folder changes."""
        hold_run_folder(self.run_dir)
        self.records.check_data(data_fingerprint(self.preloaded_data, folds))
        if self.records.has_checkpoint():  # readable, and children.csv belongs to it
            self.records.first_records(self.records.load_checkpoint()["n_evaluated"])

    def start(self, folds):
        """Logs the set-up, evaluates generation 0 (the initial parent, or the initial
        population of the GA and of random search). Returns the population."""
        if os.path.exists(self.records_path):  # a run killed before its first checkpoint
            self.records.remove()
            self.log_message("\n== Started again: the run had no finished generation ==")
        self.log_setup(folds)
        first = self.strategy.first_generation()
        self.check_objectives_on(first[0])
        self.log_message(LOG_HEADER)
        self.train_generation(first, folds)
        population = self.strategy.first_population(first)
        if not population:
            raise SearchStopped(f"{self.strategy.first_generation_name} failed, so there is nothing to evolve; "
                                f"see why in {self.records_path}")
        # The best is the best by the first objective, not the first of NSGA-II's order
        # (with several objectives that is the least crowded network of the first front).
        self.absolute_best = self.ranking.best_by_first_objective(population)
        if self.absolute_best is None:  # successive halving's fully trained network(s) failed
            raise SearchStopped(f"no network of generation 0 finished its full training (the others were stopped "
                                f"early by successive halving); see why in {self.records_path}")
        score = self.fitness(self.absolute_best)
        self.save_partial(self.strategy.parent(population), self.absolute_best, 0, score, score)
        self.end_generation(population, best_improved=True)
        return population

    def one_generation(self, population, folds):
        """One generation: the strategy's children, evaluated, then its selection. Returns
        the next population."""
        self.log_message(f"\n== Generation {self.i_gen} of {self.n_generations}{self.strategy.label} ==")
        children = self.strategy.propose(population, self.evaluated_keys)
        self.log_message(LOG_HEADER)
        self.train_generation(children, folds)
        next_population = self.strategy.select(population, children, self.i_gen)
        improved = self.update_best(children)
        if improved or self.i_gen % self.partial_save_steps == 0:
            scores = [score for score in map(self.fitness, children) if score is not None]
            self.save_partial(self.strategy.parent(next_population), self.absolute_best, self.i_gen,
                              max(scores, default=None), self.fitness(self.absolute_best))
        self.end_generation(next_population, best_improved=improved)
        return next_population

    def one_nas_step(self, parent, folds):
        """One generation of the mutation loop from parent. Returns the next parent."""
        return self.one_generation([parent], folds)[0]

    def train_generation(self, child_set, folds):
        """Trains (or dry-runs) each child, measures its deployed model, records it.

        Each child gets its id and training seed first; the evaluator then trains
        them, several at once, and they are recorded in id order as their results
        come in. A child whose architecture was evaluated before is not trained
        again: it takes that evaluation's results and is recorded as "reused".
        Returns (validation scores, test metrics), one each per child. A child
        whose training diverges or raises is recorded as failed, with the reason,
        and gets None for both; the search goes on.
        """
        tasks, keys, results = {}, [], {}
        for index, child in enumerate(child_set):
            self.n_evaluated += 1
            child.child_id = f"g{self.i_gen:03d}_c{self.n_evaluated:04d}"
            child.train_settings["seed"] = self.seed * 100_003 + self.n_evaluated
            key = child.architecture_key()
            if key not in self.evaluated_keys:
                # Halving ranks the generation's networks together: a resumed generation trains them all again.
                finished_before = None if self.halving_on() else self.result_saved_before_resume(child)
                if finished_before is not None:
                    results[index] = finished_before
                    self.log_message(f"{child.child_id} finished before the run was interrupted: "
                                     f"its saved result is used, not trained again.")
                else:
                    tasks[index] = self.task_of(child)
            self.evaluated_keys.add(key)
            keys.append(key)
        children_bar = tqdm(total=len(child_set), desc=f"generation {self.i_gen}", unit="child", position=1,
                            leave=False)
        n_recorded = 0

        def record_what_is_ready():  # in id order: a child waits for those before it
            nonlocal n_recorded
            while n_recorded < len(child_set) and (n_recorded not in tasks or n_recorded in results):
                self.record(child_set[n_recorded], keys[n_recorded], results.get(n_recorded))
                n_recorded += 1
                children_bar.update(1)
            children_bar.set_postfix_str(self._best_postfix(), refresh=True)

        halving = bool(tasks) and self.halving_on()  # then every rung is trained before anything is recorded
        finished = self._evaluate_all(tasks, folds, child_set) if tasks and not halving else iter([])
        try:
            if halving:
                results.update(halving_lib.successive_halving(
                    tasks, lambda rung_tasks: self._evaluate_rung(rung_tasks, folds, child_set),
                    lambda rung_results: self._ranked_indices(child_set, rung_results), self.rung_budgets,
                    self.halving_eta,
                    on_rung=lambda rung, budget, indices: self._log_rung(child_set, rung, budget, indices)))
            record_what_is_ready()
            for index, result in finished:
                results[index] = result
                record_what_is_ready()
        finally:
            if tasks and not halving:
                finished.close()  # leaving early (a stop, an error) ends the networks in training
            children_bar.close()
        return [child.val_score for child in child_set], [child.test_metrics for child in child_set]

    def halving_on(self):
        """Whether successive halving decides how long each network trains (it needs training)."""
        return self.rung_budgets is not None and (self.is_train if self.use_full_training else self.is_train_proxy)

    def _evaluate_all(self, tasks, folds, child_set):
        """The evaluator's results of tasks (index -> the task of child_set[index]) as they finish."""
        evaluator = self._evaluator(folds)
        for index in evaluator.to_split(tasks):
            self.log_message(f"{child_set[index].child_id}: its {fold_tasks_lib.n_folds_of(tasks[index], folds)} "
                             f"folds train on separate workers (otherwise a worker would wait).")
        return evaluator.evaluate_all(tasks)

    def _evaluate_rung(self, rung_tasks, folds, child_set):
        """The evaluator's results of one rung, as they finish, with a progress bar; stops
        after the network that finishes next when Ctrl-C asked."""
        finished = self._evaluate_all(rung_tasks, folds, child_set)
        rung_bar = tqdm(total=len(rung_tasks), desc=f"generation {self.i_gen}, rung", unit="child", position=2,
                        leave=False)
        try:
            for index, result in finished:
                rung_bar.update(1)
                if self.stop_requested:
                    raise KeyboardInterrupt
                yield index, result
        finally:
            finished.close()  # leaving early (a stop, an error) ends the networks in training
            rung_bar.close()

    def _ranked_indices(self, child_set, rung_results):
        """The indices of the rung's results that have scores, best first by the search's ranking."""
        scored = {}
        for index, result in rung_results.items():
            if result["status"] != "failed" and result["state"] is not None:
                child_set[index].take_results(result["state"])
                if self.fitness(child_set[index]) is not None:
                    scored[id(child_set[index])] = index
        ranked = [scored[id(child)] for child in self.ranking.ranked([child_set[i] for i in sorted(scored.values())])]
        self.log_message("  ranked: " + ", ".join(
            f"{child_set[index].child_id} {self.fitness(child_set[index]):.4f}" for index in ranked))
        return ranked

    def _log_rung(self, child_set, rung, budget, indices):
        last = rung == len(self.rung_budgets) - 1
        self.log_message(f"Successive halving, rung {rung} ({budget} epochs{', the full budget' if last else ''}): "
                         + ", ".join(child_set[index].child_id for index in indices))

    def result_saved_before_resume(self, child):
        """The result a session that ended inside this generation saved for child (same id,
        architecture and seed; a resume proposes the same children again), so a resumed
        generation does not train again what was finished. None when there is none, or
        when that network failed (it gets another try)."""
        if not self.records.has_network(child.child_id):
            return None
        saved = self.records.load_network(child.child_id)
        state = saved["state"]
        if (saved["status"] == "failed" or state.get("train_settings") != child.train_settings
                or architecture_key(state["architecture"], self.preloaded_data.input_shape) != child.architecture_key()):
            return None
        return saved

    def task_of(self, child):
        """What an evaluator needs to evaluate child (library_net.evaluate_network's task)."""
        return {"architecture": child.architecture(), "train_settings": dict(child.train_settings),
                "deploy_precision": child.deploy_precision, "use_full_training": self.use_full_training,
                "is_train": self.is_train if self.use_full_training else self.is_train_proxy,
                "num_selected_folds": self.num_selected_folds}

    def record(self, child, key, result):
        """Gives child its result (None: reuse the earlier evaluation of its architecture),
        records it, and stops the search when asked or when too many failed in a row."""
        earlier = self.evaluated_results.get(key)
        if result is None:
            child.take_results(self.records.network_state(earlier["child_id"]))
            child.train_seconds, child.epochs_trained = 0.0, 0  # reused: it cost nothing
            status, flops_keras_flops = "reused", earlier["flops_keras_flops"]
            reason = f"same architecture as {earlier['child_id']}: its result, not trained again"
            if earlier["status"] == "failed":
                child.val_score = child.test_metrics = None
                reason += f" ({earlier['child_id']} failed)"
            elif earlier["status"] == "stopped":
                reason += f" ({earlier['child_id']} was stopped early by successive halving)"
        else:
            if result["state"] is not None:
                child.take_results(result["state"])
            status, reason, flops_keras_flops = result["status"], result["reason"], result["flops_keras_flops"]
            if status == "failed":
                child.val_score = child.test_metrics = None
            self.n_trained += 1
            state = child.to_state()
            self.records.save_network(child.child_id, {"state": state, "status": status, "reason": reason,
                                                       "flops_keras_flops": flops_keras_flops})
            self.evaluated_results[key] = {"child_id": child.child_id, "status": status,
                                           "state": light_state(state), "flops_keras_flops": flops_keras_flops}
        self._record_child(child, status, reason, flops_keras_flops)
        if self.stop_requested:
            raise KeyboardInterrupt
        if status == "reused":
            return
        self.failures_in_a_row = self.failures_in_a_row + 1 if status == "failed" else 0
        if self.failures_in_a_row >= self.max_failures_in_a_row:
            message = (f"{self.failures_in_a_row} networks in a row failed (the last: {reason}); "
                       f"stopping. Every failure and its reason is in {self.records_path}")
            self.log_message(message)
            raise SearchStopped(message)

    def _evaluator(self, folds):
        """The evaluator for these folds (started on first use, replaced for other folds)."""
        if self.evaluator is None or self.evaluator.folds is not folds:
            if self.evaluator is not None:
                self.evaluator.close()
            settings = self.executor_settings
            self.evaluator = make_evaluator(settings["executor"], self.preloaded_data, folds, settings["n_workers"],
                                            settings["threads_per_worker"], settings["ray_address"],
                                            settings["quiet"])
        return self.evaluator

    # ----- lifecycle: Ctrl-C, time, checkpoint, resume -----------------------------
    def _catch_stop_signals(self):
        """Makes Ctrl-C (SIGINT) and SIGTERM (what schedulers and containers send) stop the
        search once the next network is recorded.

        A KeyboardInterrupt raised at an arbitrary point can be swallowed (inside
        a finalizer during garbage collection) or cut a write short, so the first
        signal only asks; the search stops at the next safe point. A second one
        stops at once (the networks in training are ended). Returns the handlers
        to restore ({} off the main thread).
        """
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signal_number, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            name = "Ctrl-C" if signal_number == signal.SIGINT else signal.Signals(signal_number).name
            tqdm.write(f"{name}: stopping once the next network is recorded (Ctrl-C again: at once).")

        return {signal_number: signal.signal(signal_number, request_stop)
                for signal_number in (signal.SIGINT, signal.SIGTERM)}

    def time_is_up(self):
        """True when time_budget_s is set and spent (logged once)."""
        if self.time_budget_s is None or self.elapsed_seconds() < self.time_budget_s:
            return False
        self.log_message(f"\nTime budget of {self.time_budget_s} s spent after generation {self.i_gen} "
                         f"({self.elapsed_seconds():.0f} s): the search ends here.")
        return True

    def elapsed_seconds(self):
        """Seconds the search has run, over all its sessions."""
        return self.elapsed_before_resume + time.perf_counter() - self.start_time

    def end_generation(self, population, best_improved):
        """Checkpoints the search and refreshes the report, once a generation is complete."""
        self.save_checkpoint(population)
        self.write_front()
        if self.generation_bar is not None:  # None when steps run outside run_NAS
            self.generation_bar.update(1)
        if best_improved and self.absolute_best.trained:
            report.write_best_architecture(self.run_dir, self.absolute_best, self.device)
        report.write_summary(self.run_dir, self.elapsed_seconds(), self.i_gen)
        report.plot_progress(self.run_dir)
        labels = {"latency_ms": f"latency on {self.device.name} (ms)", "energy_mj": f"energy on {self.device.name} (mJ)"}
        threshold_of = {figure: threshold for threshold, figure in HW_THRESHOLDS.items()}
        report.plot_tradeoff(self.run_dir, self.thresholds["flash_thr"], self.thresholds["ram_thr"],
                             [(figure, self.thresholds[threshold_of[figure]], labels[figure])
                              for figure in self.device_figures_shown])

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
        # The networks recorded after the checkpoint are proposed again, identically; those
        # that finished are taken from their network files (result_saved_before_resume).
        if state.get("version", 1) >= 2:
            self.rebuild_history(self.records.first_records(self.n_evaluated))
        else:  # a checkpoint of an earlier version holds every evaluated network (and, older still, no GA)
            self.evaluated_keys = set(state["evaluated_keys"])
            for key, earlier in state.get("evaluated_results", {}).items():
                self.records.save_network(earlier["child_id"], dict(earlier, reason=""))
                self.evaluated_results[key] = dict(earlier, state=light_state(earlier["state"]))
        population = [self.network_with_weights(network_state)
                      for network_state in state.get("population", [state.get("parent")])]
        best = self.network_with_weights(state["absolute_best"])
        self.absolute_best = next((network for network in population if network.child_id == best.child_id), best)
        self.records.keep_first(self.n_evaluated)
        self.log_message(f"\n== Resumed after generation {self.i_gen} ({self.n_evaluated} networks evaluated) ==")
        self.save_missing_models(population)
        if self.generation_bar is not None:  # None when steps run outside run_NAS
            self.generation_bar.update(self.i_gen + 1)
        return population

    def rebuild_history(self, rows):
        """The evaluated architectures and their results, from the checkpoint's records of
        children.csv and the network files: what resume needs to reuse results as before."""
        for row in rows:
            key = architecture_key(json.loads(row["architecture"]), self.preloaded_data.input_shape)
            self.evaluated_keys.add(key)
            if row["status"] != "reused":
                result = self.records.load_network(row["child_id"])
                self.evaluated_results[key] = {"child_id": row["child_id"], "status": result["status"],
                                               "flops_keras_flops": result["flops_keras_flops"],
                                               "state": light_state(result["state"])}

    def save_missing_models(self, population):
        """Writes the best model and the parent again when they are missing from models/
        (deleted after the run), from their network files."""
        for net, name in ((self.absolute_best, self.saved_names["best"]),
                          (self.strategy.parent(population), self.saved_names["parent"])):
            if net is not None and net.trained and not os.path.exists(os.path.join(self.models_dir, f"{name}.keras")):
                self.records.save_model(net, name, self.i_gen, device_figures=self.device_figures(net))
                self.log_message(f"{name} ({net.child_id}) was missing from {self.models_dir}: written again.")

    def network_with_weights(self, state):
        """The network of a (light) state, with the weights and deployed model of its
        architecture's evaluation (read from its network file)."""
        network = Net.from_state(state, self.log_path, self.preloaded_data)
        earlier = self.evaluated_results.get(network.architecture_key())
        if earlier is not None and earlier["status"] != "failed":
            network.take_results(self.records.network_state(earlier["child_id"]))
        return network

    # ----- objectives and the best -----------------------------------------------
    def figures(self, net):
        """The hardware figures of net, by name (library_objectives), from the cost model."""
        return self.constraints.figures(net)

    def device_figures(self, net):
        """net's estimated latency and energy on the target device, in all and per layer."""
        figures = self.figures(net)
        return {"target_device": self.device.name, "latency_ms": figures["latency_ms"],
                "energy_mj": figures["energy_mj"],
                "layer_latency_ms": {name: round(ms, 4) for name, ms in self.device.layer_latencies_ms(net)}}

    def fitness(self, net):
        """The first objective of net, larger is better; None when net has no scores."""
        return self.ranking.fitness(net)

    def check_objectives_on(self, network):
        """Stops the run before any training when a user-defined objective fails on network."""
        self.ranking.check_on(network)
        self.front_ranking.check_on(network)

    def update_best(self, children):
        """Makes the best of children (by the first objective) the absolute best if it beats it.
        Returns True when it did."""
        best_child = self.ranking.best_by_first_objective(children)
        if best_child is None or self.fitness(best_child) <= self.fitness(self.absolute_best):
            return False
        self.absolute_best = best_child
        return True

    def best_child_selection(self, child_set, gen_per, test_metrics_list):
        """The child with the best first objective (the validation accuracy by default;
        test metrics are never looked at). Returns (best child, its score), or
        (None, None) when every child failed."""
        return best_child_selection(child_set, gen_per, self.ranking)

    # ----- making children: the specification's methods, delegated to the search space ----
    def initial_parent(self):
        """The smart-start parent when it is on and meets the thresholds, else a random valid one."""
        return self.strategy.initial_parent()

    def new_generation(self, parent, preloaded_data):
        """n_child valid children of `parent`, unlike every network evaluated so far and
        each other where the search space allows."""
        return self.strategy.propose([parent], self.evaluated_keys, preloaded_data)

    def mutate_network_and_control(self, parent, preloaded_data, seen_keys=()):
        """A mutant of parent that meets every threshold (checked without building Keras
        models), unlike seen_keys where the attempts allow. Raises ConstraintError."""
        return self.space.valid_mutant(parent, seen_keys, preloaded_data)

    def mutate_network(self, parent, preloaded_data):
        """One mutation of parent: add, remove or change a block, or switch the head. Returns a new Net."""
        return self.space.mutate(parent, preloaded_data)

    def generate_random_block(self, input_size, block_index, current_architecture_depth):
        """A block with random settings from the search space, placed at block_index."""
        return self.space.random_block(input_size, block_index, current_architecture_depth)

    def remove_block(self, parent_blocks):
        return self.space.remove_block(parent_blocks)

    def change_block(self, parent_blocks):
        """Redraws one setting of one block."""
        return self.space.change_block(parent_blocks)

    def add_block(self, parent_blocks):
        return self.space.add_block(parent_blocks)

    def recalculate_dropout_rates(self, blocks):
        """Sets each block's dropout from its depth: dropout_min at the first, dropout_max at the last."""
        return self.space.with_dropout_by_depth(blocks)

    def correct_blocklist(self, child_blocks):
        """Re-chains blocks on the data's input: each block's input is its predecessor's
        output, indices follow the order; what a short input cannot build as asked is
        built adjusted (Block.calculate_output_size). Net does this for every network."""
        return self.space.chained(child_blocks)

    # ----- saving and the log ---------------------------------------------
    def save_partial(self, parent, best_network, i_gen, gen_best_score, absolute_best_score):
        """Saves the current parent (None: no parent, the GA and random search) and the
        absolute best (trained weights only) under models/."""
        saved = []
        for net, name in ((best_network, self.saved_names["best"]), (parent, self.saved_names["parent"])):
            if net is not None and net.trained:
                self.records.save_model(net, name, i_gen, device_figures=self.device_figures(net))
                saved.append(f"{name} ({net.child_id})")
        if best_network is not None and best_network.trained:
            self.write_class_results(best_network, self.run_dir, "")
        gen_text = f"{gen_best_score:.4g}" if gen_best_score is not None else "none"
        self.log_message(f"Saved after generation {i_gen}: {', '.join(saved) or 'nothing (dry run: no trained weights)'}; "
                         f"generation best {gen_text}, absolute best {absolute_best_score:.4g} "
                         f"({self.ranking.objectives.names[0]}).")

    def write_class_results(self, net, folder, prefix):
        """Writes net's per-class results on the test split (library_report.write_class_results):
        <folder>/<prefix>per_class.csv and <prefix>confusion.png."""
        report.write_class_results(folder, prefix, self.preloaded_data.Y_test, net.test_predictions(),
                                   self.class_names, net.deploy_precision)

    def front_members(self):
        """The Pareto front over the front objectives of every trained network: a list of
        (result of evaluated_results, network, objective values), best first objective first."""
        candidates = []
        for earlier in self.evaluated_results.values():
            network = Net.from_state(earlier["state"], self.log_path, self.preloaded_data)
            values = self.front_ranking.values(network)
            if values is not None and earlier["status"] not in ("failed", "stopped"):  # stopped: fewer epochs
                candidates.append((earlier, network, values))
        to_minimise = self.front_ranking.objectives.to_minimise
        front = objectives_lib.first_front([to_minimise(values) for _, _, values in candidates])
        return sorted((candidates[i] for i in front), key=lambda member: to_minimise(member[2]))

    def write_front(self):
        """Writes pareto.csv: the networks no other trained network beats in every front
        objective, each with its own row of children.csv, objective values first."""
        fields = list(dict.fromkeys([*self.front_ranking.objectives.names, *PARETO_FIELDS]))
        records = {record["child_id"]: record for record in self.records.read()}
        rows = [dict(values, **records[earlier["child_id"]]) for earlier, _, values in self.front_members()]
        self.records.write_pareto(rows, fields)
        return rows

    def save_front_models(self):
        """Saves every network of the Pareto front under models/pareto/ (Keras, TFLite, C header)."""
        folder = os.path.join(self.models_dir, "pareto")
        saved = []
        for earlier, network, _ in self.front_members():
            if network.trained:
                network.take_results(self.records.network_state(earlier["child_id"]))
                self.records.save_model(network, earlier["child_id"], self.i_gen, folder)
                self.write_class_results(network, folder, f"{earlier['child_id']}_")
                saved.append(earlier["child_id"])
        self.log_message(f"Saved the Pareto front's models in {folder}: {', '.join(saved) or 'none (dry run)'}.")

    def _record_child(self, child, status, reason, flops_keras_flops):
        record = child_record(child, self.i_gen, status, reason, flops_keras_flops, self.figures(child))
        self.records.append(record)
        self.log_message(log_row(record, child.val_score, with_device=bool(self.device_figures_shown)))
        if flops_keras_flops is not None and flops_keras_flops != record["flops"]:
            self.log_message(f"  note: keras-flops counts {flops_keras_flops} FLOPs, the cost model {record['flops']}.")
        if child.val_score is not None and not child.stopped_early and (self.best_record is None
                                            or child.val_score > self.best_record["val_accuracy"]):
            self.best_record = record
        score = "-" if child.val_score is None else f"{child.val_score:.4f}"
        best_text = "-" if self.best_record is None else f"{self.best_record['val_accuracy']:.4f}"
        elapsed = self.elapsed_seconds()
        tqdm.write(f"[{child.child_id}] {status:<7} params {record['n_params']:>7}  FLOPs {record['flops']:>10}  "
                   f"flash {record['flash_size']:>7} B  RAM {record['ram_size']:>7} B  val {score:>6}  "
                   f"{record['train_seconds']:>5.1f} s  best {best_text}  elapsed {elapsed:6.0f} s  "
                   f"{self.networks_per_hour():.0f} networks/h")

    def networks_per_hour(self):
        """Networks trained per hour of search so far (reused ones cost nothing and are not counted)."""
        return self.n_trained * 3600 / max(self.elapsed_seconds(), 1e-9)

    def _best_postfix(self):
        """The bars' summary: best validation score so far and the best model's figures."""
        if self.best_record is None:
            return "best -"
        return (f"best {self.best_record['val_accuracy']:.4f}: flash {self.best_record['flash_size']} B, "
                f"RAM {self.best_record['ram_size']} B, {self.best_record['flops']} FLOPs")

    def log_setup(self, folds):
        data = self.preloaded_data
        self.log_message(f"NAS run in {display_path(self.run_dir)}")
        self.log_message(f"Data: {len(data.X_train)} training and {len(data.X_test)} test samples of length "
                         f"{data.input_shape[0]}, {data.num_classes} classes, {len(folds)} folds.")
        self.log_message("Thresholds: " + ", ".join(
            f"{name} = {value if value is not None else 'none'}" for name, value in self.thresholds.items())
            + ("" if self.constraints.check_hw else " (not checked: check_hw is False)")
            + f"; flash and RAM for the {self.deploy_precision} deployment; latency and energy on "
              f"{self.device.describe()}.")
        if self.constraints.custom_constraints:
            self.log_message("User-defined constraints: " + ", ".join(self.constraints.custom_constraints) + ".")
        inputs = self.space.input_choices
        dims = (f" (tables of {', '.join(map(str, inputs['embedding_dim']))} values per byte)"
                if "embedding" in inputs["encoding"] else "")
        self.log_message(f"Inputs searched: encodings {', '.join(inputs['encoding'])}{dims}; the first "
                         f"{', '.join(map(str, inputs['length']))} bytes of each session.")
        directions = ", ".join(f"{name} ({direction})"
                               for name, direction in self.ranking.objectives.directions.items())
        self.log_message(f"Search strategy: {self.search_strategy}; objectives: {directions}; Pareto front over "
                         + ", ".join(self.front_ranking.objectives.names) + ".")
        settings = self.executor_settings
        where = "" if settings["executor"] == "local" else f" (Ray at {settings['ray_address'] or 'a new local instance'})"
        threads = settings["threads_per_worker"]
        self.log_message(f"Evaluation: {settings['executor']} executor{where}, {settings['n_workers']} "
                         f"network{'s' * (settings['n_workers'] > 1)} at once, {threads} TensorFlow "
                         f"thread{'s' * (threads > 1)} each.")
        if self.halving_on():
            self.log_message(f"Successive halving: rungs of {', '.join(map(str, self.rung_budgets))} epochs; the "
                             f"best 1/{self.halving_eta:g} of each rung continue their training; those stopped early are "
                             f"recorded as 'stopped' and never become the best or a parent.")

    def log_summary(self):
        best = self.absolute_best
        n_params, max_tens, flops, flash_size, ram_size = best.hw_measures()
        test, deployed = best.test_metrics, best.deployed or {}
        self.log_message("\n== Result ==")
        self.log_message(f"Evaluated {self.n_evaluated} networks ({self.n_trained} trained, "
                         f"{self.n_evaluated - self.n_trained} reused) in {self.elapsed_seconds():.0f} s "
                         f"over {self.i_gen} generations ({self.search_strategy}), "
                         f"{self.networks_per_hour():.0f} networks trained per hour.")
        self.log_message(f"Absolute best: {best.child_id}, {best.architecture_text()}")
        self.log_message(f"  params {n_params}, max tensor {max_tens} elements, FLOPs {flops}")
        self.log_message(f"  validation accuracy {best.val_score:.4f} (mean over the trained folds)")
        self.log_message(f"  test accuracy {test['accuracy']:.4f}, precision {test['precision']:.4f}, "
                         f"recall {test['recall']:.4f}, macro-F1 {test['f1']:.4f} (Keras, float32)")
        if deployed:
            self.log_message(
                f"  deployed as {best.deploy_precision} TFLite: flash {deployed['flash_bytes']} B measured "
                f"({flash_size} B estimated), TFLM arena {deployed['arena_bytes']} B measured "
                f"= {deployed['arena_activations']} activations + {deployed['arena_persistent']} persistent "
                f"({ram_size} B estimated)")
            self.log_message(f"  test accuracy of the deployed model run by TFLM: {deployed['test_accuracy']:.4f}, "
                             f"macro-F1 {deployed['test_f1']:.4f}; per class: {display_path(os.path.join(self.run_dir, 'per_class.csv'))}")
        if best.trained:
            name = self.saved_names["best"]
            self.log_message(f"  saved as {display_path(os.path.join(self.models_dir, name + '.keras'))} and "
                             f"{name}_{best.deploy_precision}.tflite / .h beside it")
        self.log_message(f"Pareto front over {', '.join(self.front_ranking.objectives.names)}: "
                         f"{len(self.front_members())} networks, in {display_path(self.pareto_path)}")

    def log_message(self, message, mode="a"):
        """Writes a line to the NAS log file (mode 'a' appends, 'w' starts it anew)."""
        self.records.log(message, mode)


def input_choices_on(data, input_encoding_choices, embedding_dim_choices, input_length_choices):
    """The search space's input choices (library_search_space.SearchSpace) on data: lengths
    None become the data's length. Raises ValueError naming the parameter when a length is
    longer than the data's sessions, or when the embedding is a choice and the data are not
    bytes scaled to [0, 1] (a table of 256 rows can only look bytes up)."""
    data_length = data.input_shape[0]
    lengths = list(input_length_choices or [data_length])
    too_long = [length for length in lengths if length > data_length]
    if too_long:
        raise ValueError(f"input_length_choices {too_long}: longer than the data's sessions ({data_length} "
                         f"bytes); a network reads at most what each session holds")
    if "embedding" in input_encoding_choices:
        check_byte_data(data.X_train[:, :max(lengths)], "input_encoding_choices includes 'embedding'")
    return {"encoding": list(input_encoding_choices), "embedding_dim": list(embedding_dim_choices),
            "length": lengths}


def _run_name_from(nas_saver_name):
    """A run folder name from the original toolkit's nas_saver_name (a log file name or path)."""
    stem = os.path.splitext(os.path.basename(str(nas_saver_name)))[0]
    return re.sub(r"[^\w.-]", "_", stem) or "nas"
