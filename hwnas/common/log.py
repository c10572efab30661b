"""The NAS log, a text file for people: one function writes it, whoever has a line for it
(the search's listeners, and the specification's Net.log_message and Block.dump)."""


def write_line(path, text, mode="a"):
    """Writes text and a line end to the log at path (mode 'a' appends, 'w' starts it anew);
    path None: no log."""
    if path is None:
        return
    with open(path, mode) as log_file:
        log_file.write(text + "\n")
