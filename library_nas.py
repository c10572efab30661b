"""The NAS engine's face: the specification's NAS class, its constructor, run_NAS and its methods.

NAS assembles a search from its settings (hwnas.search.settings: their defaults and checks) and hands
the work to the rooms that own it: the loop (hwnas.search.loop), the trials and their records
(hwnas.search.trials, hwnas.run.records), the budget each network trains under (hwnas.search.budget), the
strategy (hwnas.strategy.strategies) over the search space (hwnas.strategy.search_space), the evaluator
(hwnas.evaluation.evaluators) and what people see (hwnas.run.listeners). The specification's methods stay,
most as short delegations.
"""
import os
import re

from hwnas.common.files import display_path
from hwnas.data.idx import SessionData, data_fingerprint
from hwnas.data.samples import test_sample
from hwnas.devices import TargetDevice
from hwnas.evaluation.evaluators import make_evaluator
from hwnas.run import report
from hwnas.run.listeners import LogListener, ModelListener, ProgressListener, ReportListener, RunDescription, chosen_final
from hwnas.run.records import RunRecords
from hwnas.run.reference import ReferenceListener
from hwnas.run.run_folder import hold_run_folder, make_run_dir
from hwnas.run.tensorboard import TensorBoardListener
from hwnas.search import settings as settings_lib
from hwnas.search.budget import budget_of
from hwnas.search.final import FinalTraining
from hwnas.search.loop import Search
from hwnas.search.run_control import RunClock, StopSignals
from hwnas.search.trials import Trials
from hwnas.strategy import objectives as objectives_lib
from hwnas.strategy.predictor import Predictor
from hwnas.strategy.search_space import HW_THRESHOLDS, ConstraintError, Constraints, SearchSpace
from hwnas.strategy.strategies import STRATEGIES, SearchStopped, best_child_selection

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = settings_lib.DEFAULTS
__all__ = ["NAS", "ConstraintError", "SearchStopped", "check_search_parameters", "search_parameter_names"]


def check_search_parameters(parameters, n_folds=None):
    """Raises ValueError naming every search parameter whose value cannot work (hwnas.search.settings.check).

    parameters: NAS keyword arguments (those left out take the defaults), with B01_NAS.py's
    custom_constraints, custom_objectives and custom_devices among them when it has some.
    n_folds: the number of folds the search will get, when known.
    """
    settings = {name: value for name, value in parameters.items() if name in settings_lib.SETTINGS}
    settings_lib.check(settings, n_folds, parameters.get("custom_constraints"), parameters.get("custom_objectives"),
                       parameters.get("custom_devices"))


def search_parameter_names():
    """The names of the search's settings (B01_NAS.py passes its parameters of these names to NAS)."""
    return set(settings_lib.SETTINGS)


class NAS:
    """Hardware-aware evolutionary search over lists of Conv1D blocks.

    Takes the parameters of B01_NAS.py as keyword arguments of the same names
    (hwnas.search.settings; README for each one's meaning and unit); the original toolkit's
    leading ones can also be given by position, in its order. preloaded_data: a
    SessionData, or the original's 4-tuple (X_train_val, y_train_val, X_test, y_test)
    with one-hot labels. run_dir: the folder the run writes to; None makes
    <logs_dir>/<timestamp>_<nas_saver_name> as B01_NAS.py does. partial_saver_name: when
    given, the saved models are named <partial_saver_name>_best_model.* and
    <partial_saver_name>_parent.* (else best_model.* and parent.*). custom_constraints and
    custom_objectives are the user-defined functions of hwnas.strategy.objectives; custom_devices,
    device profiles (hwnas.devices) that target_device may name; class_names: a name per
    label, for the per-class results (None: the labels' numbers).
    """

    def __init__(self, is_train_proxy=DEFAULTS["is_train_proxy"], is_train=DEFAULTS["is_train"],
                 max_depth_father=DEFAULTS["max_depth_father"], max_depth=DEFAULTS["max_depth"],
                 check_hw=DEFAULTS["check_hw"], params_thr=DEFAULTS["params_thr"], flops_thr=DEFAULTS["flops_thr"],
                 flash_thr=DEFAULTS["flash_thr"], ram_thr=DEFAULTS["ram_thr"], max_tens_thr=DEFAULTS["max_tens_thr"],
                 n_generations=DEFAULTS["n_generations"], n_child=DEFAULTS["n_child"],
                 n_mutations=DEFAULTS["n_mutations"], partial_save_steps=DEFAULTS["partial_save_steps"],
                 smart_start=DEFAULTS["smart_start"], is_random_walk=DEFAULTS["is_random_walk"],
                 nas_saver_name="NAS_logger", partial_saver_name=None, preloaded_data=None,
                 use_full_training=DEFAULTS["use_full_training"], *, run_dir=None,
                 logs_dir=os.path.join(PROJECT_DIR, "logs"), custom_constraints=None, custom_objectives=None,
                 custom_devices=None, class_names=None, **settings):
        unknown = sorted(set(settings) - set(settings_lib.SETTINGS))
        if unknown:
            raise TypeError(f"NAS got unexpected keyword arguments {unknown}; its settings: {sorted(settings_lib.SETTINGS)}")
        positional = {name: value for name, value in locals().items() if name in settings_lib.SETTINGS}
        # What a script leaves out takes the original toolkit's value (B01_NAS.py gives every setting).
        self.settings = settings_lib.with_defaults(dict(positional, **settings), original=True)
        settings_lib.check(self.settings, None, custom_constraints, custom_objectives, custom_devices)
        if preloaded_data is None:
            raise ValueError("NAS needs preloaded_data: a SessionData or (X_train_val, y_train_val, X_test, y_test)")
        self.preloaded_data = SessionData.from_preloaded(preloaded_data)
        self.search_data = test_sample(self.preloaded_data, self.settings["max_search_sessions"], self.settings["seed"])
        self.notices = settings_lib.unheeded(self.settings)  # settings that do nothing here, said up front
        if run_dir is None:  # the original's calling convention: the run is named from nas_saver_name
            run_dir = make_run_dir(logs_dir, _run_name_from(nas_saver_name))
            print(f"NAS run folder: {display_path(run_dir)}")
        self.run_dir, self.records = run_dir, RunRecords(run_dir)
        self.log_path, self.records_path = self.records.log_path, self.records.records_path
        self.pareto_path, self.models_dir = self.records.pareto_path, self.records.models_dir
        self.saved_names = {role: f"{partial_saver_name}_{name}" if partial_saver_name else name
                            for role, name in (("best", "best_model"), ("parent", "parent"))}
        self.class_names = list(class_names or map(str, range(self.preloaded_data.num_classes)))
        self.search = self._assemble(custom_constraints, custom_objectives, custom_devices)
        self.space, self.strategy, self.ranking = self.search.space, self.search.strategy, self.search.ranking
        self.max_depth = self.settings["max_depth"]

    def _assemble(self, custom_constraints, custom_objectives, custom_devices):
        """The search's pieces, from the settings."""
        s, data = self.settings, self.search_data
        thresholds = {name: s[name] for name in HW_THRESHOLDS}
        device = TargetDevice.named(s["target_device"], custom_devices, s["clock_mhz"], s["flops_per_cycle"], s["power_mw"])
        constraints = Constraints(thresholds, custom_constraints, s["check_hw"], device)
        objectives = list(s["objectives"])
        ranking = objectives_lib.Ranking(objectives_lib.Objectives(objectives, custom_objectives), constraints.figures)
        # The Pareto front is over the objectives; a single objective is set against flash and RAM.
        front_names = objectives if len(objectives) > 1 else list(dict.fromkeys(
            [objectives[0], "val_accuracy", "flash_size", "ram_size"]))
        front_ranking = objectives_lib.Ranking(objectives_lib.Objectives(front_names, custom_objectives),
                                               constraints.figures)
        # latency and energy are shown (log, plot) where they matter to this search
        device_figures_shown = [figure for threshold, figure in HW_THRESHOLDS.items() if figure in
                                ("latency_ms", "energy_mj") and (thresholds[threshold] is not None or figure in objectives)]
        train_settings = {name: s[name] for name in ("epochs", "batch_size", "patience", "learning_rate", "seed", "verbose")}
        space = SearchSpace.from_settings(s, constraints, data, train_settings)
        strategy = STRATEGIES[s["search_strategy"]].from_settings(s, space, ranking, lambda text: self.search.say(text))
        training = s["is_train"] if s["use_full_training"] else s["is_train_proxy"]
        budget = budget_of(s, training)
        executor = {name: s[name] for name in ("executor", "n_workers", "threads_per_worker", "ray_address")}

        def evaluator_of(data_set, folds, n_workers, threads):
            return make_evaluator(executor["executor"], data_set, folds, n_workers, threads, executor["ray_address"],
                                  s["verbose"] == 0)
        description = RunDescription(self.records, device, thresholds, constraints, executor, device_figures_shown,
                                     self.saved_names, budget, self.preloaded_data, self.notices)
        listeners = self._listeners(description, device, thresholds, device_figures_shown)
        self.device, self.constraints, self.thresholds = device, constraints, thresholds
        return Search(settings=s, data=data, records=self.records, trials=Trials(self.records, data, s["seed"]),
                      space=space, strategy=strategy, ranking=ranking, front_ranking=front_ranking, budget=budget,
                      constraints=constraints, clock=RunClock(s["time_budget_s"]), stop=StopSignals(),
                      listeners=listeners, predictor=Predictor(constraints.figures, s["max_depth"], s["seed"])
                      if s["proposal_pool"] else None, make_evaluator=lambda folds: evaluator_of(
                          data, folds, executor["n_workers"], executor["threads_per_worker"]),
                      final=FinalTraining(self.preloaded_data, s, evaluator_of, self.records, lambda text: self.search.say(text))
                      if s["final_training"] else None)

    def _listeners(self, description, device, thresholds, device_figures_shown):
        """What people get from the search, in the order each event is told: the reference forest
        first (the log's header reads it), then the log, the console, the models, the reports, TensorBoard."""
        s = self.settings
        reference = ([ReferenceListener(self.records, self.preloaded_data, s["seed"], s["n_workers"] * s["threads_per_worker"])]
                     if s["reference_forest"] else [])
        return [*reference, LogListener(self.records, description), ProgressListener(),
                ModelListener(self.records, self.saved_names, self.device_figures, self.write_class_results),
                ReportListener(self.records, device, thresholds, device_figures_shown), TensorBoardListener(self.records)]

    # ----- the run ----------------------------------------------------------------
    def run_NAS(self, folds):
        """Runs the search for n_generations on the training folds.

        Returns (last parent, absolute best), both Nets with their trained weights, as the
        original toolkit does: the mutation loop's parent (the GA's and random search's
        best ranked network of the last population), and the network best by the first
        objective among every network trained (with final_training: the finalist chosen on a
        held-out tenth after training the search's best final_candidates again on every training
        session, hwnas.search.final, the model saved as the best). After every generation the run folder gets
        a checkpoint, and its summary.json, pareto.csv, best_architecture.txt, per_class.csv,
        progress.png and tradeoff.png are brought up to date. With time_budget_s, no network
        starts once the budget is spent (the final training's share kept aside); the generation
        closes with the networks that started and the run ends as a normal end does. When
        run_dir holds a checkpoint, the search resumes from it and continues exactly as an
        uninterrupted run would. Raises ConstraintError, SearchStopped; RunFolderBusy when
        another process writes to run_dir; RecordsError when run_dir's records are unreadable
        or its data or split is not this search's; KeyboardInterrupt (Ctrl-C or SIGTERM) is
        logged and re-raised.
        """
        check_search_parameters(dict(self.settings), n_folds=len(folds))
        self.claim_run_folder(folds)
        population = self.search.run(folds)
        chosen = chosen_final(self.search)
        return population[0], chosen.final if chosen is not None else self.search.absolute_best

    @property
    def best_searched(self):
        """The search's network whose model the run saved as its best: the chosen finalist of the final
        training, or without one the absolute best (its search scores: what the search saw of it)."""
        chosen = chosen_final(self.search)
        return self.search.absolute_best if chosen is None else chosen.searched

    def claim_run_folder(self, folds):
        """Makes this process the run folder's only writer, and checks a resumed run is given the
        data and split it was searched on (recorded in data.json at its start). Raises
        RunFolderBusy or RecordsError (which names the file) before anything in the folder changes."""
        hold_run_folder(self.run_dir)
        self.records.check_data(data_fingerprint(self.preloaded_data, folds))
        if self.records.has_checkpoint():  # readable, children.csv and the network files belong to it
            state = self.records.load_checkpoint()
            rows = self.records.first_records(state.n_evaluated)
            if state.history is None:  # (a version 1 checkpoint holds its networks itself)
                self.records.check_networks([row["child_id"] for row in rows if row["status"] != "reused"])

    # the search's state, as the specification's NAS held it
    i_gen = property(lambda self: self.search.i_gen, lambda self, value: setattr(self.search, "i_gen", value))
    absolute_best = property(lambda self: self.search.absolute_best,
                             lambda self, value: setattr(self.search, "absolute_best", value))
    evaluated_keys = property(lambda self: self.search.trials.keys,
                              lambda self, keys: setattr(self.search.trials, "keys", set(keys)))
    n_evaluated = property(lambda self: self.search.trials.n_evaluated)
    n_trained = property(lambda self: self.search.trials.n_trained)

    def figures(self, net):
        """The hardware figures of net, by name (hwnas.strategy.objectives), from the cost model."""
        return self.constraints.figures(net)

    def device_figures(self, net):
        """net's estimated latency and energy on the target device, in all and per layer."""
        figures = self.figures(net)
        return {"target_device": self.device.name, "latency_ms": figures.latency_ms, "energy_mj": figures.energy_mj,
                "layer_latency_ms": {name: round(ms, 4) for name, ms in self.device.layer_latencies_ms(net)}}

    def write_class_results(self, net, folder, prefix):
        """Writes net's per-class results on the test split (hwnas.run.report.write_class_results)."""
        report.write_class_results(folder, prefix, net.data.Y_test, net.test_predictions(),
                                   self.class_names, net.deploy_precision, report.reference_forest_of(self.run_dir))

    # ----- the specification's methods --------------------------------------------
    def train_generation(self, child_set, folds):
        """Trains (or dry-runs) each child, measures its deployed model and records it (hwnas.search.loop).
        Returns (validation scores, test metrics), one each per child (None for a failed child)."""
        self.search.evaluate(child_set, folds)
        return [child.val_score for child in child_set], [child.test_metrics for child in child_set]

    def one_nas_step(self, parent, folds):
        """One generation of the search from parent, numbered i_gen. Returns the next parent."""
        return self.search.generation([parent], folds)[0]

    def best_child_selection(self, child_set, gen_per, test_metrics_list):
        """The child with the best first objective (the validation accuracy by default; test
        metrics are never looked at). Returns (best child, its score), or (None, None) when every child failed."""
        return best_child_selection(child_set, gen_per, self.ranking)

    def initial_parent(self):
        """The smart-start network when it is on and meets the thresholds, else a random valid one."""
        return self.strategy.initial_parent()

    def new_generation(self, parent, preloaded_data):
        """n_child valid children of parent (mutants, whatever the strategy), unlike every network
        evaluated so far and each other where the search space allows."""
        return self.space.valid_mutants(parent, self.settings["n_child"], self.evaluated_keys, preloaded_data)

    def mutate_network_and_control(self, parent, preloaded_data, seen_keys=()):
        """A mutant of parent that meets every threshold (checked without building Keras models),
        unlike seen_keys where the attempts allow. Raises ConstraintError."""
        return self.space.valid_mutant(parent, seen_keys, preloaded_data)

    def mutate_network(self, parent, preloaded_data):
        """One mutation of parent: add, remove or change a block, switch the head or change the input."""
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
        """Re-chains blocks on the input: each block's input is its predecessor's output, indices
        follow the order; what a short input cannot build as asked is built adjusted. Net does this for every network."""
        return self.space.chained(child_blocks)

    def save_partial(self, parent, best_network, i_gen, gen_best_score, absolute_best_score):
        """Saves the current parent (None: no parent, the GA and random search) and the absolute
        best (trained weights only) under models/, and the best's per-class results."""
        model_saver = next(listener for listener in self.search.listeners if isinstance(listener, ModelListener))
        model_saver.save(self.search, parent, best_network, i_gen, gen_best_score)

    def log_message(self, message, mode="a"):
        """Writes a line to the NAS log file (mode 'a' appends, 'w' starts it anew)."""
        self.records.log(message, mode)


def _run_name_from(nas_saver_name):
    """A run folder name from the original toolkit's nas_saver_name (a log file name or path)."""
    stem = os.path.splitext(os.path.basename(str(nas_saver_name)))[0]
    return re.sub(r"[^\w.-]", "_", stem) or "nas"
