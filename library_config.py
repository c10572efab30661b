"""The experiment's parameters and its run folder: command-line overrides, the folder,
the parameter snapshot, and writing its files atomically.

B01_NAS.py keeps its parameters as plain assignments; this module only takes
them as a dict, so library code never reads the main script's globals.
"""
import ast
import datetime
import json
import logging
import os
import sys
import tempfile


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
        if default is None:  # e.g. resume_from: a path is text, not a Python literal
            return text
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


def display_path(path):
    """path relative to the current folder when it lies inside it (what a person reads), else as given."""
    relative = os.path.relpath(os.path.abspath(path))
    return path if relative.startswith("..") else relative


def write_parameters(run_dir, parameters):
    """Writes the parameters a run used to run_dir/parameters.json."""
    path = os.path.join(run_dir, "parameters.json")
    write_atomically(path, json.dumps(parameters, indent=2))
    return path


def read_parameters(run_dir):
    """The parameters a run used (run_dir/parameters.json). Raises ParameterError if it is not a run folder."""
    path = os.path.join(run_dir, "parameters.json")
    if not os.path.isfile(path):
        raise ParameterError(f"resume_from={run_dir!r}: no parameters.json there, so it is not a run folder")
    with open(path) as file:
        return json.load(file)


def write_atomically(path, content):
    """Writes text or bytes to path through a temporary file and a rename,
    so a kill at any moment leaves the previous version whole."""
    temporary_path = path + ".partial"
    with open(temporary_path, "wb" if isinstance(content, bytes) else "w") as file:
        file.write(content)
    os.replace(temporary_path, path)


class quiet_native_output:
    """Sends what native (C++) code writes to file descriptors 1 and 2 into a
    temporary file while the block runs; the text is kept in .text.

    TensorFlow, its converter and TFLM print from C++ straight to the process's
    descriptors, past Python's sys.stdout and TF_CPP_MIN_LOG_LEVEL, so only a
    descriptor swap catches it. enabled=False lets everything through.
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.text = ""

    def __enter__(self):
        if self.enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            self._capture = tempfile.TemporaryFile(mode="w+b")
            self._saved = [os.dup(1), os.dup(2)]
            os.dup2(self._capture.fileno(), 1)
            os.dup2(self._capture.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        if self.enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for descriptor in self._saved:
                os.close(descriptor)
            self._capture.seek(0)
            self.text = self._capture.read().decode(errors="replace")
            self._capture.close()
        return False


def quiet_tensorflow_logs():
    """Keeps TensorFlow's and absl's Python loggers to errors (retracing and deprecation notes)."""
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
