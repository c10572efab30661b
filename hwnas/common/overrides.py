"""Parameters written as name=value on a script's command line: read as Python literals of the
type of each one's default, an unknown name refused with the list of valid ones (both scripts use them).
"""
import ast
import os

from hwnas.common.numbers import is_integer


class ParameterError(ValueError):
    """A parameter override or value is not valid; the message names it."""


def parse_overrides(arguments, defaults):
    """Parses `name=value` command-line arguments against the defaults.

    Values are read as Python literals and must match the default's type
    (an int is accepted where a float is expected, a whole float such as 2e6
    where an int is, and any number for a threshold (`*_thr`); a None default
    takes any literal; None is accepted anywhere and checked where the value is
    used). Returns a dict of the overridden parameters. Raises ParameterError
    for an unknown name (listing the valid ones), a malformed argument or a wrong type.
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
    return _typed(name, value, default, text)


def _typed(name, value, default, shown):
    """value as the type of default, or ParameterError naming name={shown!r}."""
    if default is None or value is None:  # None means "no limit" for the thresholds
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        raise ParameterError(f"{name}={shown!r}: expected {type(default).__name__}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float):
        if value.is_integer():  # 2e6 is how people write two million
            return int(value)
        if name.endswith("_thr"):  # thresholds are numbers of any kind
            return value
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    if type(value) is not type(default):
        raise ParameterError(f"{name}={shown!r}: expected {type(default).__name__}, got {type(value).__name__}")
    return value


def check_count(name, value, minimum=0):
    """Raises ParameterError unless value is an integer (not a bool) of at least minimum."""
    if not is_integer(value) or value < minimum:
        raise ParameterError(f"{name}={value!r}: must be an integer of {minimum} or more")


def check_path(name, value, optional=False):
    """Raises ParameterError unless value is a path (a non-empty text), or None when optional."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{name}={value!r}: must be a path (text){' or None' if optional else ''}")


def check_run_name(run_name):
    """Raises ParameterError unless run_name can name a folder inside logs_dir."""
    if not run_name or "/" in run_name or os.sep in run_name or run_name in (".", "..") or "\0" in run_name:
        raise ParameterError(f"run_name={run_name!r}: must be a folder name, without a path separator or '..'")
