"""The search's settings, written once: each one's default, its check and whether a resume may change it.

B01_NAS.py's parameter block is the experiment as a user edits it (a test holds its values to these
defaults); NAS takes the same names as keyword arguments and fills what a script leaves out from
here; check() is the one check of them all, and hwnas.run.run_folder's resume rules read `resumable` and
`before_added` from here.
"""
import importlib.util
from typing import NamedTuple

from hwnas.common.numbers import is_integer, is_number
from hwnas.evaluation import EXECUTORS
from hwnas.network.block import ACTIVATIONS
from hwnas.network.deployed_cost import DEPLOYED_COST
from hwnas.network.encodings import BY_DEFAULT as ENCODINGS_BY_DEFAULT
from hwnas.network.encodings import ENCODINGS
from hwnas.network.head import HEADS
from hwnas.strategy.strategies import STRATEGIES

ABSENT = object()


class Setting(NamedTuple):
    """A setting: its default, check(value) -> a problem's text or None, whether a resume may
    change it, the value that reproduces what runs searched before it existed (ABSENT: the
    default), and the original toolkit's value where this toolkit's default differs from it
    (ABSENT: the same): what NAS(...) takes when a script leaves the setting out."""
    default: object
    check: object
    resumable: bool = False
    before_added: object = ABSENT
    original: object = ABSENT


def count(minimum):
    def check(name, value):
        if not is_integer(value) or value < minimum:
            return f"{name} must be an integer >= {minimum}, got {value!r}"
    return check


def positive(name, value):
    if not is_number(value) or value <= 0:
        return f"{name} must be a positive number, got {value!r}"


def optional(check, none_means):
    def optional_check(name, value):
        problem = None if value is None else check(name, value)
        return problem and f"{problem} (or None: {none_means})"
    return optional_check


def flag(name, value):
    if not isinstance(value, bool):
        return f"{name} must be True or False, got {value!r}"


def one_of(choices):
    def check(name, value):
        if value not in choices:
            return f"{name} must be one of {choices}, got {value!r}"
    return check


def list_of(choices=None, distinct=False):
    """A non-empty list (or tuple) of values from choices, or of integers >= 1 without choices."""
    def valid(value):
        if choices is not None:
            return value in choices
        return is_integer(value) and value >= 1

    def check(name, values):
        if (not isinstance(values, (list, tuple)) or not values or not all(map(valid, values))
                or (distinct and len(set(values)) < len(values))):
            what = (f"{'distinct ' * distinct}values drawn from {list(choices)}" if choices is not None
                    else "integers >= 1")
            return f"{name} must be a non-empty list of {what}, got {values!r}"
    return check


def text(name, value):
    if not isinstance(value, str) or not value.strip():
        return f"{name} must be a non-empty text, got {value!r}"


def seed_value(name, value):
    if not is_integer(value) or not 0 <= value < 2 ** 32:
        return f"{name} must be an integer from 0 to 2**32 - 1, got {value!r}"


def above_one(name, value):
    if not is_number(value) or value <= 1:
        return f"{name} must be a number > 1 (3 keeps the best third at each rung) or None, got {value!r}"


def probability(name, value):
    if not is_number(value) or not 0 <= value <= 1:
        return f"{name} must be a probability in [0, 1], got {value!r}"


def verbosity(name, value):
    if not is_integer(value) or value not in (0, 1, 2):
        return f"{name} must be 0, 1 or 2, got {value!r}"


def anything(name, value):
    return None


THRESHOLD = optional(positive, "no limit")
SETTINGS = {
    # search
    # The defaults are the configuration measured best at equal compute (docs/benchmark_levers.md); a
    # script written for the original toolkit gets its own (original=): the mutation loop, from scratch.
    "search_strategy": Setting("ga", one_of(tuple(STRATEGIES)), original="mutation"),
    "n_generations": Setting(3, count(0), resumable=True),
    "n_child": Setting(4, count(1)),
    "n_mutations": Setting(1, count(1)),
    "max_depth_father": Setting(3, count(1)),
    "max_depth": Setting(6, count(1)),
    "smart_start": Setting(True, flag),
    "is_random_walk": Setting(False, flag),
    "max_attempts": Setting(200, count(1)),
    "max_failures_in_a_row": Setting(10, count(1), resumable=True),
    "time_budget_s": Setting(None, optional(positive, "no limit"), resumable=True),
    "objectives": Setting(["val_accuracy"], anything),  # checked with the custom objectives (check)
    "max_search_sessions": Setting(2000, optional(count(2), "every session"), before_added=None, original=None),
    "inherit_weights": Setting(True, flag, original=False),
    "inherit_epochs": Setting(None, optional(count(1), "a third of epochs")),
    "proposal_pool": Setting(8, optional(count(2), "off: the first candidate drawn is trained"), original=None),
    "predictor_warmup": Setting(10, count(2)),
    # population GA
    "population_size": Setting(6, count(1)),
    "n_elites": Setting(2, count(0)),
    "tournament_size": Setting(2, count(1)),
    "crossover_rate": Setting(0.9, probability),
    "save_pareto_models": Setting(False, flag, resumable=True),
    # search space
    "input_encoding_choices": Setting(None, optional(list_of(tuple(ENCODINGS), distinct=True),
                                                     f"{list(ENCODINGS_BY_DEFAULT)}, less those the data rule out"),
                                      before_added=["scaled"]),
    "embedding_dim_choices": Setting([4, 8, 16], list_of()),
    "input_length_choices": Setting(None, optional(list_of(), "the data's full length"), before_added=None),
    "filters_choices": Setting([4, 8, 16, 32, 64], list_of()),
    "kernel_size_choices": Setting([3, 5, 7, 9], list_of()),
    "stride_choices": Setting([1, 2], list_of()),
    "pool_size_choices": Setting([2, 3, 4], list_of()),
    "activation_choices": Setting(list(ACTIVATIONS), list_of(ACTIVATIONS)),
    "head_choices": Setting(list(HEADS), list_of(HEADS)),
    "dropout_min": Setting(0.05, probability),
    "dropout_max": Setting(0.3, probability),
    # hardware thresholds
    "check_hw": Setting(True, flag),
    "params_thr": Setting(20_000, THRESHOLD),
    "flops_thr": Setting(2_000_000, THRESHOLD),
    "flash_thr": Setting(32_000, THRESHOLD),
    "ram_thr": Setting(16_000, THRESHOLD),
    "max_tens_thr": Setting(16_000, THRESHOLD),
    "latency_thr": Setting(None, THRESHOLD),
    "energy_thr": Setting(None, THRESHOLD),
    "target_device": Setting("generic", text),  # checked with custom_devices (check)
    "clock_mhz": Setting(80, positive),
    "flops_per_cycle": Setting(1.0, positive),
    "power_mw": Setting(30.0, positive),
    "deploy_precision": Setting("int8", one_of(tuple(DEPLOYED_COST))),
    # training
    "is_train": Setting(True, flag),
    "is_train_proxy": Setting(True, flag),
    "use_full_training": Setting(False, flag),
    "num_selected_folds": Setting(2, count(1)),
    "epochs": Setting(15, count(1)),
    "batch_size": Setting(64, count(1)),
    "patience": Setting(5, count(1)),
    "learning_rate": Setting(1e-3, positive),
    "halving_eta": Setting(None, optional(above_one, "every network gets the full budget")),
    "min_epochs": Setting(3, count(1)),
    "verbose": Setting(0, verbosity, resumable=True),
    "final_training": Setting(True, flag, resumable=True, before_added=False, original=False),
    "final_epochs": Setting(30, count(1), resumable=True),
    "final_candidates": Setting(5, count(1), resumable=True, before_added=1),
    "reference_forest": Setting(True, flag, resumable=True, before_added=False, original=False),
    # evaluation
    "executor": Setting("local", one_of(EXECUTORS), resumable=True),
    "n_workers": Setting(2, count(1), resumable=True),
    "threads_per_worker": Setting(1, count(1), resumable=True),
    "ray_address": Setting(None, optional(text, "start Ray here"), resumable=True),
    # output
    "partial_save_steps": Setting(1, count(1), resumable=True),
    "seed": Setting(0, seed_value),
}
DEFAULTS = {name: setting.default for name, setting in SETTINGS.items()}
# The settings a resume may change: how long the search goes on and where it runs.
RESUMABLE = tuple(name for name, setting in SETTINGS.items() if setting.resumable)
# Settings added after runs were made, and the values that reproduce what those runs searched.
BEFORE_ADDED = {name: setting.before_added for name, setting in SETTINGS.items() if setting.before_added is not ABSENT}
# The original toolkit's values of the settings whose default here differs: what a script written for it gets.
ORIGINAL = {name: setting.original for name, setting in SETTINGS.items() if setting.original is not ABSENT}


def with_defaults(settings, original=False):
    """settings (a dict of some of SETTINGS) completed with the defaults (original: with the
    original toolkit's values where they differ, as NAS(...) completes a script's); other keys are kept."""
    return {**DEFAULTS, **(ORIGINAL if original else {}), **settings}


def unheeded(settings):
    """Sentences about the settings a search cannot honour as given (said once, up front, in the log
    and on the console): settings valid alone that another setting makes do nothing."""
    notices = []
    if settings["inherit_weights"] and settings["search_strategy"] == "random":
        notices.append("inherit_weights=True does nothing under search_strategy='random': its networks are drawn "
                       "new, with no parent to inherit from")
    return notices


def check(settings, n_folds=None, custom_constraints=None, custom_objectives=None, custom_devices=None):
    """Raises ValueError naming every setting whose value cannot work (all of them in one message).

    settings: a dict of SETTINGS' names (those left out take their defaults); n_folds: the
    number of folds the search will get, when known; the user-defined functions and device
    profiles of B01_NAS.py, checked with the settings that name them.
    """
    settings = with_defaults(settings)
    problems = [problem for name, setting in SETTINGS.items() if (problem := setting.check(name, settings[name]))]
    if not problems:  # the rules between settings need each one's own value to be valid
        problems += _rules_between(settings, n_folds)
    problems += _user_functions(settings, custom_constraints or {}, custom_objectives or {}, custom_devices,
                                device_settings_valid=not problems)
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))


def _rules_between(s, n_folds):
    problems = []
    if s["max_depth_father"] > s["max_depth"]:
        problems.append(f"max_depth_father ({s['max_depth_father']}) must not exceed max_depth ({s['max_depth']})")
    if s["search_strategy"] == "ga" and not s["n_elites"] <= s["population_size"] <= s["n_elites"] + s["n_child"]:
        problems.append(f"the population GA needs n_elites ({s['n_elites']}) <= population_size "
                        f"({s['population_size']}) <= n_elites + n_child ({s['n_child']}), "
                        f"so that elites and children can fill the next population")
    if s["executor"] == "ray" and importlib.util.find_spec("ray") is None:
        problems.append("executor 'ray' needs the ray package: pip install -r requirements.txt")
    if s["halving_eta"] is not None and s["min_epochs"] > s["epochs"]:
        problems.append(f"min_epochs ({s['min_epochs']}) must not exceed epochs ({s['epochs']})")
    if s["dropout_min"] > s["dropout_max"] or s["dropout_max"] >= 1:
        problems.append(f"dropout rates need 0 <= dropout_min <= dropout_max < 1, got "
                        f"{s['dropout_min']} and {s['dropout_max']}")
    if n_folds is not None and not s["use_full_training"] and s["num_selected_folds"] > n_folds:
        problems.append(f"num_selected_folds ({s['num_selected_folds']}) is larger than the number of folds ({n_folds})")
    return problems


def _user_functions(s, custom_constraints, custom_objectives, custom_devices, device_settings_valid):
    """Problems of the user-defined constraints, objectives and devices, and of the settings that name them."""
    from hwnas.devices import TargetDevice, check_profile
    from hwnas.strategy import objectives as objectives_lib
    problems = objectives_lib.check_custom_functions(custom_constraints, custom_objectives)
    if not problems:
        try:
            objectives_lib.Objectives(list(s["objectives"]), custom_objectives)
        except (ValueError, TypeError):
            problems.append(f"objectives must be a non-empty list of distinct names from "
                            f"{sorted(objectives_lib.BUILTIN_OBJECTIVES)} or the keys of custom_objectives, "
                            f"got {s['objectives']!r}")
    if custom_devices is not None and not isinstance(custom_devices, dict):
        return problems + [f"custom_devices must be a dict name -> device profile, got {custom_devices!r}"]
    profile_problems = [problem for name, profile in (custom_devices or {}).items()
                        for problem in check_profile(name, profile)]
    problems += profile_problems
    if device_settings_valid and not profile_problems:  # (a bad profile of target_device is named once, above)
        try:
            TargetDevice.named(s["target_device"], custom_devices, s["clock_mhz"], s["flops_per_cycle"], s["power_mw"])
        except ValueError as error:
            problems.append(str(error))
    return problems
