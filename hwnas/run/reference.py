"""The run's reference forest, as a listener of the search (hwnas.data.forest fits it): before the
first network, a 200-tree random forest on the run's own split, kept in the run folder (a resumed
run reads it back), told in the NAS log's header and on the console, with a warning when it is
near-perfect (the labels may sit in a few bytes). summary.json, per_class.csv and the plots read
it from the run folder (hwnas.run.report)."""
import json
import os

from tqdm import tqdm

from hwnas.common.files import write_atomically
from hwnas.data.forest import N_TREES, ReferenceForest, reference_forest
from hwnas.run.listeners import Listener
from hwnas.run.report import FOREST_FILE, reference_forest_of


class ReferenceListener(Listener):
    """records: the run's RunRecords; data: the whole SessionData of the run; seed: the search's;
    n_jobs: the cores the forest may use (the search's)."""

    def __init__(self, records, data, seed, n_jobs):
        self.records, self.data, self.seed, self.n_jobs = records, data, seed, n_jobs

    def started(self, search, folds):
        self.forest_of_run()

    def resumed(self, search, population):
        self.forest_of_run()

    def forest_of_run(self):
        """The run's ReferenceForest: read from the run folder, or fitted (and written there) when it
        has none; its line and, when it is near-perfect, its warning on the console."""
        saved = reference_forest_of(self.records.run_dir)
        if saved is None:
            tqdm.write(f"Fitting the reference forest ({N_TREES} trees) on the training split ...")
            forest = reference_forest(self.data, self.seed, self.n_jobs)
            write_atomically(os.path.join(self.records.run_dir, FOREST_FILE), json.dumps(forest.as_dict(), indent=1))
        else:
            forest = ReferenceForest.from_dict(saved)
        tqdm.write(forest.line())
        if forest.near_perfect:
            tqdm.write(f"Warning: {forest.warning()}.")
        return forest

