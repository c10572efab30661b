"""The search's loop and its face: the specification's methods under every strategy, the best
the console shows is the best the search saves, typed results and their records."""
import pytest

from hwnas.evaluation.evaluate import Result, Status
from library_nas import NAS

TIGHT = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)


@pytest.mark.parametrize("strategy", ["mutation", "ga", "random"])
def test_new_generation_gives_n_child_valid_mutants_under_every_strategy(tmp_path, small_data, strategy):
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, search_strategy=strategy, n_child=3,
              population_size=3, n_elites=2, seed=1, **TIGHT)
    parent = nas.initial_parent()
    children = nas.new_generation(parent, data)  # raised TypeError under "ga" and "random" before
    assert len(children) == 3 and len({child.architecture_key() for child in children}) == 3
    assert all(child.parent_ids == (None,) or child.mutation for child in children)
    assert all(not nas.constraints.violations(child) for child in children)


def test_the_console_shows_the_best_by_the_first_objective_as_the_search_saves_it(tmp_path, small_data, capsys):
    """With objectives=["val_f1", ...] the most accurate network is not the best; the console's
    "best" was the most accurate before (the saved best was the one of the best F1)."""
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, objectives=["val_f1", "flash_size"], seed=0, **TIGHT)
    search = nas.search
    children = [nas.space.random_network(3, set(), "a test network") for _ in range(2)]
    scores = [{"accuracy": 0.9, "f1": 0.6}, {"accuracy": 0.8, "f1": 0.7}]  # the second: less accurate, better F1
    for child, metrics in zip(children, scores):
        key = search.trials.open(child, 0)
        state = child.to_state().replaced(val_metrics=dict(metrics, precision=0.5, recall=0.5),
                                          val_score=metrics["accuracy"], trained=False)
        search.record(child, key, Result(state, Status.DRY_RUN))
    assert search.ranking.best_by_first_objective(children) is children[1]
    assert search.best_record["child_id"] == children[1].child_id and search.best_record["fitness"] == 0.7
    captured = capsys.readouterr()
    console = captured.err + captured.out
    assert "best 0.7000" in console and "best 0.9000" not in console


def test_a_network_file_keeps_the_result_as_plain_data_with_its_status(tmp_path, small_data):
    import pickle
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, **TIGHT)
    child = nas.initial_parent()
    key = nas.search.trials.open(child, 0)
    nas.search.trials.close(child, key, Result(child.to_state(), Status.FAILED, "TrainingFailed: nan"))
    with open(nas.records.network_path(child.child_id), "rb") as network_file:
        saved = pickle.load(network_file)
    assert saved["status"] == "failed" and saved["reason"] == "TrainingFailed: nan"  # as files before the type read
    loaded = nas.records.load_network(child.child_id)
    assert loaded.status is Status.FAILED and loaded.state.architecture == child.architecture()
