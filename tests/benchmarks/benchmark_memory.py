"""Benchmark: resident memory over a long search stays flat.

Evaluates 200 tiny networks (one epoch each, on 600 demo sessions) through the
search's own train_generation, the same path as a real run (a worker process
trains each network, counts its FLOPs, converts it to int8 and measures it with
TFLM), and prints the resident memory of the search's process plus its worker
after network 20 and after the last one.

    python tests/benchmarks/benchmark_memory.py [--children 200]
"""
import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

with quiet_native_output():
    from hwnas.data import idx as data_lib  # noqa: E402
    from library_nas import NAS  # noqa: E402
quiet_tensorflow_logs()


def resident_megabytes(pid="self"):
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=200)
    arguments = parser.parse_args()
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(None, 0.2)
    X_train, y_train = X_train[:600], y_train[:600]
    folds = data_lib.fold_index(X_train, y_train, 3)
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, 6), X_test, data_lib.one_hot(y_test, 6))
    with tempfile.TemporaryDirectory() as run_dir:
        nas = NAS(run_dir=run_dir, preloaded_data=data, epochs=1, num_selected_folds=1, n_child=1, check_hw=False, seed=0)
        parent = nas.initial_parent()
        resident_after = {}
        for index in range(1, arguments.children + 1):
            child = nas.mutate_network_and_control(parent, data)
            nas.train_generation([child], folds)
            parent = child if child.val_score is not None else parent
            # the search's process plus the worker process that trains the networks
            worker = resident_megabytes(nas.evaluator.workers[0].process.pid)
            resident_after[index] = resident_megabytes() + worker
            if index in (1, 20) or index % 20 == 0:
                print(f"after network {index:4d}: resident memory {resident_after[index]:7.1f} MiB "
                      f"(worker {worker:6.1f} MiB)", flush=True)
        nas.evaluator.close()
    early, late = resident_after[min(20, arguments.children)], resident_after[arguments.children]
    peak = max(value for index, value in resident_after.items() if index >= 20)
    print(f"growth from network 20 to network {arguments.children}: {100 * (late - early) / early:+.1f} %; "
          f"highest after network 20: {peak:.1f} MiB ({100 * (peak - early) / early:+.1f} %)")


if __name__ == "__main__":
    main()
