"""Files a person reads and a kill must not cut short: written through a temporary file and a rename;
paths shown relative to where the person stands, or given back as a script's parameter takes them."""
import os


def write_atomically(path, content):
    """Writes text or bytes to path through a temporary file and a rename,
    so a kill at any moment leaves the previous version whole."""
    temporary_path = path + ".partial"
    with open(temporary_path, "wb" if isinstance(content, bytes) else "w") as file:
        file.write(content)
    os.replace(temporary_path, path)


def path_as_parameter(path, project_dir):
    """path as a path parameter of B01_NAS.py takes it: relative to the project folder
    when it lies inside it, else absolute (so a printed command works from any folder)."""
    relative = os.path.relpath(os.path.abspath(path), project_dir)
    return os.path.abspath(path) if relative.startswith("..") else relative


def display_path(path):
    """path relative to the current folder when it lies inside it (what a person reads), else as given."""
    relative = os.path.relpath(os.path.abspath(path))
    return path if relative.startswith("..") else relative
