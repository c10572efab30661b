"""The experiment's parameters and its run folder: command-line overrides, what a
resume may change, the folder and its one-writer lock, the parameter snapshot,
and writing its files atomically.

B01_NAS.py keeps its parameters as plain assignments; this module only takes
them as a dict, so library code never reads the main script's globals.
"""
import ast
import datetime
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile


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
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
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


def resume_parameters(run_dir, defaults, overrides, resumable, before_added):
    """The parameters to resume run_dir with: its parameters.json, then overrides.

    resumable: the names a resume may change (how long the search goes on and where it runs:
    library_settings.RESUMABLE, and resume_from); anything else (data, split, seed, search
    space, training, thresholds) would mix two experiments in one run folder. before_added:
    {name: value} of parameters added after runs were made, which a run saved without them
    resumes with (library_settings.BEFORE_ADDED). Raises ParameterError naming every override
    that would change what the run is.
    """
    saved = read_parameters(run_dir, defaults)
    saved = {**{name: value for name, value in before_added.items() if name in defaults}, **saved}
    changed = [f"{name}={value!r} (the run has {saved.get(name, defaults[name])!r})"
               for name, value in overrides.items()
               if name not in resumable and value != saved.get(name, defaults[name])]
    if changed:
        raise ParameterError(f"resume_from={run_dir}: a resume continues the same experiment and cannot change "
                             f"{'; '.join(changed)}. Only {', '.join(name for name in resumable if name != 'resume_from')} "
                             f"may change; start a new run for anything else")
    return {**defaults, **saved, **overrides}


def make_run_dir(logs_dir, run_name):
    """Creates logs_dir/<YYYYmmdd-HHMMSS>_<run_name>, never an existing folder. Returns its path.
    Raises ParameterError naming logs_dir when the folder cannot be made there."""
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
        except OSError as error:  # read-only, not a folder, no permission, disk full
            raise ParameterError(f"logs_dir={logs_dir}: cannot make the run folder there "
                                 f"({error.strerror or error})") from None


class RunFolderBusy(RuntimeError):
    """Another live process writes to the run folder; the message names it and the process."""


LOCK_FILE_NAME = "run.lock"
_held_locks = {}  # real path of a run folder -> its open lock file, held until the process ends


def hold_run_folder(run_dir):
    """Makes this process the run folder's only writer until it ends.

    Takes an exclusive lock on run_dir/run.lock (flock), which the system lets
    go when the holder ends in any way, kill -9 included, so a dead run's lock
    is taken over. Taking it again in the same process does nothing. Raises
    RunFolderBusy, naming the process that holds it, when another one does.
    """
    key = os.path.realpath(run_dir)
    if key in _held_locks:
        return
    lock_file = open(os.path.join(run_dir, LOCK_FILE_NAME), "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _lock_holder(lock_file)
        lock_file.close()
        raise RunFolderBusy(f"{run_dir} is in use by {holder}: a run folder has one writer at a time; "
                            f"wait for that search to end, or stop it, then resume") from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"process {os.getpid()} on {socket.gethostname()} since "
                    f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}\n")
    lock_file.flush()
    _held_locks[key] = lock_file


def _lock_holder(lock_file):
    """Who holds a run folder's lock, as its file says. The holder writes itself there just
    after it takes the lock, so in that instant the file may be empty or still name the
    previous, dead holder: then the holder is a process that is starting."""
    lock_file.seek(0)
    text = lock_file.read().strip()
    match = re.match(r"process (\d+) on (\S+) ", text)
    if match and (match.group(2) != socket.gethostname() or _is_alive(int(match.group(1)))):
        return text  # (a holder on another machine sharing the folder cannot be checked from here)
    return "another process, which is starting"


def _is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_run_folder(run_dir):
    """Removes a run folder this process made and holds (a run that failed before its first network)."""
    lock_file = _held_locks.pop(os.path.realpath(run_dir), None)
    if lock_file is not None:
        lock_file.close()
    shutil.rmtree(run_dir, ignore_errors=True)


def path_as_parameter(path, project_dir):
    """path as a path parameter of B01_NAS.py takes it: relative to the project folder
    when it lies inside it, else absolute (so a printed command works from any folder)."""
    relative = os.path.relpath(os.path.abspath(path), project_dir)
    return os.path.abspath(path) if relative.startswith("..") else relative


def display_path(path):
    """path relative to the current folder when it lies inside it (what a person reads), else as given."""
    relative = os.path.relpath(os.path.abspath(path))
    return path if relative.startswith("..") else relative


def write_parameters(run_dir, parameters):
    """Writes the parameters a run used to run_dir/parameters.json."""
    path = os.path.join(run_dir, "parameters.json")
    write_atomically(path, json.dumps(parameters, indent=2))
    return path


def read_parameters(run_dir, defaults=None):
    """The parameters a run used (run_dir/parameters.json).

    defaults: the script's parameters; when given, every saved name must be one
    of them and its value of the same type. Raises ParameterError naming the
    file when it is missing, not JSON, or holds an unknown name or a wrong type.
    """
    path = os.path.join(run_dir, "parameters.json")
    if not os.path.isdir(run_dir):
        raise ParameterError(f"resume_from={run_dir}: no such folder")
    if not os.path.isfile(path):
        raise ParameterError(f"resume_from={run_dir}: no parameters.json there, so it is not a run folder")
    try:
        with open(path) as file:
            saved = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"{path}: cannot be read as the run's parameters ({error})") from None
    if not isinstance(saved, dict):
        raise ParameterError(f"{path}: holds {type(saved).__name__}, not the run's parameters (a JSON object)")
    if defaults is not None:
        unknown = sorted(set(saved) - set(defaults))
        if unknown:
            raise ParameterError(f"{path}: unknown parameter{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                                 f"(not in B01_NAS.py)")
        try:
            saved = {name: _typed(name, value, defaults[name], value) for name, value in saved.items()}
        except ParameterError as error:
            raise ParameterError(f"{path}: {error}") from None
    return saved


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
