"""The experiment's parameters: command-line overrides, the run folder, the snapshot a run keeps.

B01_NAS.py keeps its parameters as plain assignments; this module only takes
them as a dict, so library code never reads the main script's globals.
"""
import ast
import datetime
import json
import os


class ParameterError(ValueError):
    """A parameter override or value is not valid; the message names it."""


def parse_overrides(arguments, defaults):
    """Parses `name=value` command-line arguments against the defaults.

    Values are read as Python literals and must match the default's type
    (an int is accepted where a float is expected; a None default takes any
    literal; None is accepted anywhere and checked where the value is used).
    Returns a dict of the overridden parameters. Raises ParameterError for an
    unknown name (listing the valid ones), a malformed argument or a wrong type.
    """
    overrides = {}
    for argument in arguments:
        if "=" not in argument:
            raise ParameterError(f"argument {argument!r} is not of the form name=value")
        name, text = argument.split("=", 1)
        if name not in defaults:
            raise ParameterError(f"unknown parameter {name!r}; valid names: {', '.join(sorted(defaults))}")
        overrides[name] = _parse_value(name, text, defaults[name])
    return overrides


def _parse_value(name, text, default):
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ParameterError(f"{name}={text!r}: not a valid value (expected {type(default).__name__})") from None
    if default is None or value is None:  # None means "no limit" for the thresholds
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        raise ParameterError(f"{name}={text!r}: expected {type(default).__name__}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    if type(value) is not type(default):
        raise ParameterError(f"{name}={text!r}: expected {type(default).__name__}, got {type(value).__name__}")
    return value


def make_run_dir(logs_dir, run_name):
    """Creates logs_dir/<YYYYmmdd-HHMMSS>_<run_name>, never an existing folder. Returns its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(logs_dir, f"{stamp}_{run_name}")
    run_dir, suffix = base, 1
    while True:
        try:
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:
            suffix += 1
            run_dir = f"{base}_{suffix}"


def write_parameters(run_dir, parameters):
    """Writes the parameters a run used to run_dir/parameters.json."""
    path = os.path.join(run_dir, "parameters.json")
    with open(path, "w") as file:
        json.dump(parameters, file, indent=2)
    return path
