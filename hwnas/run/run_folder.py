"""The run folder: made under logs_dir with a timestamp, one writer at a time (its lock), the
parameters a run used (parameters.json) and what a resume may change of them.

B01_NAS.py keeps its parameters as plain assignments; this module only takes them as a dict, so
library code never reads the main script's globals.
"""
import datetime
import fcntl
import json
import os
import re
import shutil
import socket

from hwnas.common.files import write_atomically
from hwnas.common.overrides import ParameterError, _typed


def resume_parameters(run_dir, defaults, overrides, resumable, before_added):
    """The parameters to resume run_dir with: its parameters.json, then overrides.

    resumable: the names a resume may change (how long the search goes on and where it runs:
    hwnas.search.settings.RESUMABLE, and resume_from); anything else (data, split, seed, search
    space, training, thresholds) would mix two experiments in one run folder. before_added:
    {name: value} of parameters added after runs were made, which a run saved without them
    resumes with (hwnas.search.settings.BEFORE_ADDED). Raises ParameterError naming every override
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
