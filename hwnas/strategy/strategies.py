"""Search strategies: which networks to try next, and which survive.

Each strategy answers, in the spirit of an ask/tell interface:
  first_generation()                  the networks of generation 0;
  first_population(evaluated)         generation 0's survivors, once evaluated;
  propose(population, evaluated_keys) the children of the next generation (ask);
  select(population, children)        the next population, once they are evaluated (tell);
  parent(population)                  the network saved as "parent" (None: none).
A strategy never trains, records or saves anything: the search (library_nas)
asks an evaluator for that and passes the evaluated networks back. Networks
with scores are compared by a Ranking (hwnas.strategy.objectives).

  MutationLoop: the specification's loop. One parent, n_child mutated children
      per generation; the best child becomes the next parent (random walk) or
      competes with it.
  PopulationGA: population_size networks; each child is made from two parents
      chosen by tournament, crossed over at block boundaries, then mutated; the
      next population is the best of the elites and the children, ranked as
      NSGA-II ranks.
  RandomSearch: n_child uniformly random valid networks per generation (the
      baseline a strategy has to beat).
"""


class SearchStopped(RuntimeError):
    """The search cannot go on (too many failed networks in a row, a failed initial parent)."""


def best_child_selection(child_set, gen_per, ranking):
    """The child with the best first objective (gen_per: validation accuracies; test
    metrics are never looked at). Returns (best child, its score), or (None, None)
    when every child failed."""
    if ranking.objectives.names[0] != "val_accuracy":  # gen_per holds validation accuracies
        gen_per = [None if score is None else ranking.fitness(child) for child, score in zip(child_set, gen_per)]
    best = ranking.best_by_first_objective(child_set, gen_per)
    return (None, None) if best is None else (best, gen_per[next(i for i, c in enumerate(child_set) if c is best)])


class Strategy:
    """What the three strategies share. space: SearchSpace; ranking: Ranking; log:
    function(message) writing the NAS log; settings: the search's parameters."""

    label = ""  # shown in each generation's heading
    first_generation_name = "every network of the initial population"

    def __init__(self, space, ranking, log, n_child, smart_start, max_depth_father, population_size=None):
        self.space, self.ranking, self.log = space, ranking, log
        self.n_child, self.smart_start = n_child, smart_start
        self.max_depth_father, self.population_size = max_depth_father, population_size

    own_settings = ()  # the settings (hwnas.search.settings' names) this strategy takes besides the common ones

    @classmethod
    def from_settings(cls, settings, space, ranking, log):
        """The strategy of a search's settings (hwnas.search.settings' names)."""
        return cls(space, ranking, log, settings["n_child"], settings["smart_start"], settings["max_depth_father"],
                   settings["population_size"], **{name: settings[name] for name in cls.own_settings})

    def initial_parent(self):
        """The smart-start network when it is on and meets the thresholds on one of the inputs
        it may read (hwnas.strategy.search_space.SearchSpace.smart_start_inputs, the first that
        does), else a random valid one."""
        if self.smart_start:
            _, _, changes = self.space.smart_start_fitted()
            if changes:
                self.log("The smart-start network, fitted into the search space's choices: " + "; ".join(changes) + ".")
            broken = []
            for input_stage in self.space.smart_start_inputs():
                parent = self.space.smart_start_network(input_stage)
                violations = self.space.constraints.violations(parent)
                if not violations:
                    if broken:
                        self.log("The smart-start network breaks " + "; ".join(broken)
                                 + f"; on {input_stage.short_name()} it meets them.")
                    self.log("Initial parent: the smart-start network.")
                    return parent
                broken.append(f"{', '.join(violations)} on {input_stage.short_name()}")
            self.log("The smart-start network breaks " + "; ".join(broken)
                     + "; starting from a random valid network instead.")
        parent = self.space.random_network(self.max_depth_father, (), "a random initial parent")
        self.log("Initial parent: a random network.")
        return parent

    def first_population(self, evaluated):
        """The evaluated networks of generation 0 that have scores, ranked best first."""
        scored = [network for network in evaluated if self.ranking.fitness(network) is not None]
        return self.ranked_and_logged(scored) if scored else []

    def ranked_and_logged(self, networks):
        return self.ranking.ranked(networks)

    def parent(self, population):
        return None

    def random_children(self, seen_keys, max_depth, what):
        """n_child random valid networks, unlike seen_keys and each other where the attempts allow."""
        seen_keys, children = set(seen_keys), []
        for _ in range(self.n_child):
            child = self.space.random_network(max_depth, seen_keys, what)
            seen_keys.add(child.architecture_key())
            children.append(child)
        return children

    def initial_population(self, max_depth, smart_start):
        """population_size new valid networks (the smart-start network first with smart_start)."""
        self.log(f"\n== Generation 0: the initial population of {self.population_size} ==")
        population, seen_keys = [], set()
        if smart_start:
            population.append(self.initial_parent())
            seen_keys.add(population[0].architecture_key())
        while len(population) < self.population_size:
            network = self.space.random_network(max_depth, seen_keys, "a network of the initial population")
            seen_keys.add(network.architecture_key())
            population.append(network)
        return population


class MutationLoop(Strategy):
    """The specification's loop: one parent, n_child mutants per generation."""

    first_generation_name = "the initial parent"
    own_settings = ("is_random_walk",)

    def __init__(self, *args, is_random_walk=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_random_walk = is_random_walk

    def first_generation(self):
        parent = self.initial_parent()
        self.log("\n== Generation 0: the initial parent ==")
        return [parent]

    def propose(self, population, evaluated_keys):
        """n_child valid children of the parent, unlike every network evaluated so far and
        each other where the search space allows."""
        return self.space.valid_mutants(population[0], self.n_child, evaluated_keys)

    def select(self, population, children, i_gen):
        """The best child becomes the parent (random walk), or if it beats the parent."""
        parent = population[0]
        best_child, gen_best_score = best_child_selection(children, [child.val_score for child in children],
                                                          self.ranking)
        if best_child is None:
            self.log("Every child failed; the parent stays.")
            return [parent]
        parent_score = self.ranking.fitness(parent)
        if self.is_random_walk or gen_best_score > parent_score:
            reason = "random walk" if self.is_random_walk else f"beats the parent's {parent_score:.4g}"
            self.log(f"Selection: {best_child.child_id} ({gen_best_score:.4g}) becomes the parent ({reason}).")
            return [best_child]
        self.log(f"Selection: the parent {parent.child_id} ({parent_score:.4g}) "
                 f"stays; the best child scored {gen_best_score:.4g}.")
        return [parent]

    def parent(self, population):
        return population[0]


class PopulationGA(Strategy):
    """A population genetic algorithm with tournament selection, one-point crossover,
    mutation and NSGA-II survival of the n_elites best and the children."""

    label = " (population GA)"
    own_settings = ("n_elites", "tournament_size", "crossover_rate")

    def __init__(self, *args, n_elites=2, tournament_size=2, crossover_rate=0.9, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_elites, self.tournament_size, self.crossover_rate = n_elites, tournament_size, crossover_rate

    def first_generation(self):
        return self.initial_population(self.max_depth_father, self.smart_start)

    def ranked_and_logged(self, networks):
        population = self.ranking.ranked(networks)
        self.log_population(population, 0)
        return population

    def propose(self, population, evaluated_keys):
        """n_child children of the population, each valid and, where the search space
        allows, unlike every network evaluated."""
        seen_keys, children = set(evaluated_keys), []
        ranks, crowding = self.ranking.ranks_and_crowding(population)
        for _ in range(self.n_child):
            child = self.offspring(population, ranks, crowding, seen_keys)
            seen_keys.add(child.architecture_key())
            children.append(child)
        return children

    def offspring(self, population, ranks, crowding, seen_keys):
        """A valid child: two parents chosen by tournament, crossed over (with probability
        crossover_rate, else the first parent is copied), then mutated n_mutations times.
        A valid repeat of an evaluated network is returned only when nothing new is found."""
        def candidate():
            first = population[self.tournament_selection(ranks, crowding)]
            second = population[self.tournament_selection(ranks, crowding)]
            if self.space.rng.random() < self.crossover_rate:
                child = self.space.crossover(first, second)
            else:
                child = self.space.copy_of(first)
            for _ in range(self.space.n_mutations):
                child = self.space.mutate(child)
            return child

        return self.space.draw_valid(candidate, seen_keys, "a child of the population")

    def tournament_selection(self, ranks, crowding):
        """Index of the winner of tournament_size members drawn at random (with replacement):
        the lowest front rank, then the largest crowding distance, then the first drawn."""
        drawn = [self.space.rng.randrange(len(ranks)) for _ in range(self.tournament_size)]
        return min(drawn, key=lambda i: (ranks[i], -crowding[i]))

    def select(self, population, children, i_gen):
        """The best population_size of the n_elites best of the population and the children."""
        pool, pool_keys = [], set()
        for network in population[:self.n_elites] + children:  # the population is kept best first
            key = network.architecture_key()
            if self.ranking.fitness(network) is not None and key not in pool_keys:
                pool.append(network)
                pool_keys.add(key)
        if pool:
            next_population = self.ranking.ranked(pool)[:self.population_size]
        else:  # every child failed and no elite is kept: nothing would be left to evolve
            self.log("Every child failed and no elite is kept; the population stays.")
            next_population = population
        self.log_population(next_population, i_gen)
        return next_population

    def log_population(self, population, i_gen):
        """Logs the population, best first, with its front rank and objective values."""
        ranks, _ = self.ranking.ranks_and_crowding(population)
        self.log(f"Population after generation {i_gen} (front rank: 0 = not dominated):")
        for net, rank in zip(population, ranks):
            values = self.ranking.values(net)
            self.log(f"  {net.child_id}  rank {rank}  "
                     + "  ".join(f"{name} {value:.6g}" for name, value in values.items())
                     + f"  {net.architecture_text()}")


class RandomSearch(Strategy):
    """n_child uniformly random valid networks per generation; keeps no population."""

    label = " (random search)"

    def first_generation(self):
        return self.initial_population(self.space.max_depth, smart_start=False)

    def propose(self, population, evaluated_keys):
        return self.random_children(evaluated_keys, self.space.max_depth, "a random network")

    def select(self, population, children, i_gen):
        return population


STRATEGIES = {"mutation": MutationLoop, "ga": PopulationGA, "random": RandomSearch}
