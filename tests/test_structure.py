"""The house a newcomer reads: no class or function too long to take in at once, the search's
face short, the settings written once (B01_NAS.py's block holds the same defaults)."""
import ast
import glob
import os

import pytest

from conftest import PROJECT_DIR

MAX_CLASS_LINES, MAX_FUNCTION_LINES = 300, 60


ROOT_FILES = {"B01_NAS.py", "B00_pcap_to_idx.py", "library_nas.py", "library_net.py", "library_block.py",
              "library_compute_stats.py", "library_load_and_split_data.py"}


def library_definitions():
    """Every class and function of the package (hwnas/) and of the design's files at the root."""
    paths = glob.glob(os.path.join(PROJECT_DIR, "hwnas", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(PROJECT_DIR, "library_*.py"))
    for path in sorted(paths):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield os.path.relpath(path, PROJECT_DIR), node


def test_the_root_holds_the_two_scripts_and_the_designs_five_files_and_the_rest_is_in_the_package():
    assert {os.path.basename(path) for path in glob.glob(os.path.join(PROJECT_DIR, "*.py"))} == ROOT_FILES
    folders = sorted(os.path.basename(os.path.dirname(path))
                     for path in glob.glob(os.path.join(PROJECT_DIR, "hwnas", "*", "__init__.py")))
    assert folders == ["captures", "common", "data", "evaluation", "network", "run", "search", "strategy"]


def test_no_library_class_or_function_is_too_long_to_read_at_once():
    too_long = [f"{file}: {'class' if isinstance(node, ast.ClassDef) else 'function'} {node.name} "
                f"(line {node.lineno}) has {node.end_lineno - node.lineno + 1} lines"
                for file, node in library_definitions()
                if node.end_lineno - node.lineno + 1 > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef)
                                                        else MAX_FUNCTION_LINES)]
    assert not too_long, "; ".join(too_long)
    assert len(open(os.path.join(PROJECT_DIR, "library_nas.py")).read().splitlines()) < 300


def main_script_parameters():
    """{name: value} of B01_NAS.py's parameter block (above its rule line), read without running it."""
    script = open(os.path.join(PROJECT_DIR, "B01_NAS.py")).read()
    block = ast.parse(script.split("# ------")[0])
    return {node.targets[0].id: ast.literal_eval(node.value) for node in block.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and not isinstance(node.value, ast.Dict)}


def test_the_main_scripts_parameters_are_the_settings_with_their_defaults():
    from hwnas.search import settings
    parameters = main_script_parameters()
    data_and_output = {"images_path", "labels_path", "test_images_path", "test_labels_path", "num_classes",
                       "test_size", "num_folds", "logs_dir", "run_name", "resume_from"}  # the script's own
    assert set(parameters) - data_and_output == set(settings.SETTINGS)
    differing = {name: (parameters[name], default) for name, default in settings.DEFAULTS.items()
                 if parameters[name] != default}
    assert not differing, f"B01_NAS.py's values and settings' defaults differ: {differing}"


def test_nas_takes_its_defaults_from_the_settings_and_the_originals_where_they_differ(small_data, tmp_path):
    from hwnas.search import settings
    from library_nas import NAS
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=small_data[0])
    assert nas.settings == dict(settings.DEFAULTS, **settings.ORIGINAL)
    # a script written for the original toolkit trains on every session and saves the search's model
    assert nas.settings["max_search_sessions"] is None and nas.settings["final_training"] is False
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['epoch'\\]"):
        NAS(run_dir=str(tmp_path / "run"), preloaded_data=small_data[0], epoch=3)


def test_the_readme_is_a_guide_and_its_links_lead_somewhere():
    import re
    readme = open(os.path.join(PROJECT_DIR, "README.md")).read()
    assert len(readme.splitlines()) <= 360 and "## Contents" in readme
    anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
               for heading in re.findall(r"^#+ (.*)$", readme, flags=re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        if target.startswith("#"):
            assert target[1:] in anchors, f"README links to {target}, no such heading"
        elif not target.startswith("http"):
            assert os.path.exists(os.path.join(PROJECT_DIR, target)), f"README links to {target}, no such file"
