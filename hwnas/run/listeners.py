"""What people get from a search, as listeners of its loop's events (hwnas.search.loop.Search.emit):
the NAS log's text, the progress on the console, the saved models, the reports and plots.
The loop decides; these only show and save (keras-tuner's callbacks are the model).

Events, with the search as their first argument: started(folds), resumed(population),
generation_started(), evaluation_started(children), rung_started(children, rung, budget,
indices, last), network_finished(), ranked(children, indices), network_recorded(child, record,
flops_keras_flops), evaluation_ended(), generation_ended(population, children, improved),
predictor_checked(correlation, n_predicted, n_fitted), message(text), final_trained(final_models),
restarted(kept_path, n_records), interrupted(), ended(population).
"""
import os

from tqdm import tqdm

from hwnas.common.files import display_path
from hwnas.data.forest import ReferenceForest
from hwnas.network.encodings import ENCODINGS
from hwnas.run import report
from hwnas.run.records import LOG_HEADER, PARETO_FIELDS, log_row
from hwnas.run.report import empty_labels_text, over_classes
from hwnas.strategy.search_space import HW_THRESHOLDS


class Listener:
    """Every event, doing nothing: a listener answers the ones it needs."""

    def started(self, search, folds): pass
    def resumed(self, search, population): pass
    def generation_started(self, search): pass
    def evaluation_started(self, search, children): pass
    def rung_started(self, search, children, rung, budget, indices, last): pass
    def network_finished(self, search): pass
    def ranked(self, search, children, indices): pass
    def network_recorded(self, search, child, record, flops_keras_flops): pass
    def evaluation_ended(self, search): pass
    def generation_ended(self, search, population, children, improved): pass
    def message(self, search, text): pass
    def predictor_checked(self, search, correlation, n_predicted, n_fitted): pass
    def final_trained(self, search, final_models): pass
    def restarted(self, search, kept_path, n_records): pass
    def interrupted(self, search): pass
    def ended(self, search, population): pass


class LogListener(Listener):
    """The NAS log's text: the set-up, each generation's table, the decisions, the result."""

    def __init__(self, records, description):
        self.records, self.description = records, description

    def message(self, search, text):
        self.records.log(text)

    def started(self, search, folds):
        for line in self.description.setup_lines(search, folds):
            self.records.log(line)

    def resumed(self, search, population):
        self.records.log(f"\n== Resumed after generation {search.i_gen} ({search.trials.n_evaluated} networks "
                         f"evaluated) ==")

    def restarted(self, search, kept_path, n_records):
        self.records.log(f"\n== Started again: the run folder has no checkpoint (no finished generation, or it was "
                         f"deleted); the {n_records} networks recorded before are kept in {kept_path} ==")

    def generation_started(self, search):
        self.records.log(f"\n== Generation {search.i_gen} of {search.settings['n_generations']}"
                         f"{search.strategy.label} ==")

    def evaluation_started(self, search, children):
        self.records.log(LOG_HEADER)

    def rung_started(self, search, children, rung, budget, indices, last):
        self.records.log(f"Successive halving, rung {rung} ({budget} epochs{', the full budget' if last else ''}): "
                         + ", ".join(children[index].child_id for index in indices))

    def ranked(self, search, children, indices):
        self.records.log("  ranked: " + ", ".join(
            f"{children[index].child_id} {search.ranking.fitness(children[index]):.4f}" for index in indices))

    def network_recorded(self, search, child, record, flops_keras_flops):
        self.records.log(log_row(record, child.val_score, with_device=bool(self.description.device_figures_shown)))
        if flops_keras_flops is not None and flops_keras_flops != record.figures.flops:
            self.records.log(f"  note: keras-flops counts {flops_keras_flops} FLOPs, the cost model {record.figures.flops}.")

    def predictor_checked(self, search, correlation, n_predicted, n_fitted):
        text = "too few to tell" if correlation is None else f"{correlation:+.2f}"
        self.records.log(f"Predictor (fitted on {n_fitted} networks): Spearman correlation of its predictions and the "
                         f"measured scores of the {n_predicted} networks it chose: {text}.")

    def final_trained(self, search, final_models):
        objective = search.ranking.objectives.names[0]
        for model in final_models:
            searched, final, cap = model.searched, model.final, search.settings["max_search_sessions"]
            test, deployed = final.test_metrics, final.deployed or {}
            marks = [f"the search's best by {objective}"] * (searched.child_id == search.absolute_best.child_id)
            if model.chosen and model.n_finalists > 1:
                marks.append(f"chosen: the best of the {model.n_finalists} finalists on the held-out sessions")
            marked = f" ({'; '.join(marks)})" if marks else ""
            self.records.log(
                f"Final model of {searched.child_id}{marked}: trained on "
                f"{model.sessions} sessions, {final.epochs_trained} epochs in {final.train_seconds:.0f} s (early "
                f"stopping on {model.holdout_sessions}, accuracy there {final.val_score:.4f})."
                f"\n  search: validation accuracy {searched.val_score:.4f} (mean over its folds"
                f"{'' if cap is None else f', at most {cap} sessions of each part'})"
                f"\n  final:  test accuracy {test['accuracy']:.4f} (Keras, float32), "
                + (f"{deployed['test_accuracy']:.4f} as {final.deploy_precision} on TFLM; " if deployed else "")
                + f"macro-F1 {test['f1']:.4f}" + (f" / {deployed['test_f1']:.4f}" if deployed else "")
                + f"; on all {len(final.data.Y_test)} test sessions")

    def interrupted(self, search):
        self.records.log(f"\nInterrupted during generation {search.i_gen}; every file up to the last finished "
                         f"generation is saved. To continue: resume_from={self.records.run_dir}")

    def ended(self, search, population):
        for line in self.description.summary_lines(search):
            self.records.log(line)


class ProgressListener(Listener):
    """The console: a bar of generations, a bar of the generation's networks (and of each rung),
    one line per recorded network, the best so far (by the first objective)."""

    def __init__(self):
        self.generations = self.children = self.rung = None

    def started(self, search, folds):
        self.generations = tqdm(total=search.settings["n_generations"] + 1, desc="generations", unit="gen", position=0)

    def resumed(self, search, population):
        self.started(search, None)
        self.generations.update(search.i_gen + 1)

    def restarted(self, search, kept_path, n_records):
        tqdm.write(f"No checkpoint in {display_path(search.records.run_dir)}: the search starts again from generation 0; "
                   f"the {n_records} networks recorded before are kept in {display_path(kept_path)}.")

    def evaluation_started(self, search, children):
        self.children = tqdm(total=len(children), desc=f"generation {search.i_gen}", unit="child", position=1,
                             leave=False)

    def rung_started(self, search, children, rung, budget, indices, last):
        self._close_rung()
        self.rung = tqdm(total=len(indices), desc=f"generation {search.i_gen}, rung", unit="child", position=2,
                         leave=False)

    def network_finished(self, search):
        if self.rung is not None:
            self.rung.update(1)

    def network_recorded(self, search, child, record, flops_keras_flops):
        if self.children is not None:
            self.children.update(1)
            self.children.set_postfix_str(self._best(search), refresh=True)
        score = "-" if child.val_score is None else f"{child.val_score:.4f}"
        best = "-" if search.best_record is None else f"{search.best_record['fitness']:.4f}"
        elapsed = search.clock.elapsed_seconds()
        per_hour = search.trials.n_trained * 3600 / max(elapsed, 1e-9)
        figures = record.figures
        tqdm.write(f"[{child.child_id}] {record.status:<7} params {figures.n_params:>7}  FLOPs {figures.flops:>10}  "
                   f"flash {figures.flash_size:>7} B  RAM {figures.ram_size:>7} B  val {score:>6}  "
                   f"{record.train_seconds:>5.1f} s  best {best}  elapsed {elapsed:6.0f} s  {per_hour:.0f} networks/h")

    def _best(self, search):
        best = search.best_record
        if best is None:
            return "best -"
        return (f"best {search.ranking.objectives.names[0]} {best['fitness']:.4f}: flash {best['flash_size']} B, "
                f"RAM {best['ram_size']} B, {best['flops']} FLOPs")

    def _close_rung(self):
        if self.rung is not None:
            self.rung.close()
            self.rung = None

    def evaluation_ended(self, search):
        self._close_rung()
        if self.children is not None:
            self.children.close()
            self.children = None

    def generation_ended(self, search, population, children, improved):
        if self.generations is not None:
            self.generations.update(1)

    def interrupted(self, search):
        self.ended(search, None)

    def ended(self, search, population):
        self.evaluation_ended(search)
        if self.generations is not None:
            self.generations.close()
            self.generations = None


class ModelListener(Listener):
    """The saved models: the best and the parent (when the best improved, or every
    partial_save_steps generations), with their per-class results; the Pareto front's at the end."""

    def __init__(self, records, saved_names, device_figures, write_class_results):
        self.records, self.saved_names = records, saved_names
        self.device_figures, self.write_class_results = device_figures, write_class_results

    def generation_ended(self, search, population, children, improved):
        if not (improved or search.i_gen % search.settings["partial_save_steps"] == 0):
            return
        scores = [score for score in map(search.ranking.fitness, children) if score is not None]
        self.save(search, search.strategy.parent(population), search.absolute_best, search.i_gen,
                  max(scores, default=None) if search.i_gen else search.ranking.fitness(search.absolute_best))

    def save(self, search, parent, best, i_gen, generation_best):
        """Saves the parent (None: no parent, the GA and random search) and the best (trained weights only)."""
        saved = []
        for net, name in ((best, self.saved_names["best"]), (parent, self.saved_names["parent"])):
            if net is not None and net.trained:
                self.records.save_model(net, name, i_gen, device_figures=self.device_figures(net))
                saved.append(f"{name} ({net.child_id})")
        if best is not None and best.trained:
            self.write_class_results(best, self.records.run_dir, "")
        generation_text = f"{generation_best:.4g}" if generation_best is not None else "none"
        search.say(f"Saved after generation {i_gen}: {', '.join(saved) or 'nothing (dry run: no trained weights)'}; "
                   f"generation best {generation_text}, absolute best {search.ranking.fitness(best):.4g} "
                   f"({search.ranking.objectives.names[0]}).")

    def resumed(self, search, population):
        """Writes the best model and the parent again when they are missing from models/ (deleted after the run)."""
        for net, name in ((search.absolute_best, self.saved_names["best"]),
                          (search.strategy.parent(population), self.saved_names["parent"])):
            if net is not None and net.trained and not os.path.exists(os.path.join(self.records.models_dir, f"{name}.keras")):
                self.records.save_model(net, name, search.i_gen, device_figures=self.device_figures(net))
                search.say(f"{name} ({net.child_id}) was missing from {self.records.models_dir}: written again.")

    def final_trained(self, search, final_models):
        """The chosen finalist's final model replaces the search's as the saved best."""
        best = chosen_final(search)
        if best is None:
            return  # every finalist's final training failed: the search's model stays saved
        self.records.save_model(best.final, self.saved_names["best"], search.i_gen,
                                device_figures=self.device_figures(best.final), more={"final_training": final_record(best, search.settings["max_search_sessions"])})
        self.write_class_results(best.final, self.records.run_dir, "")
        search.say(f"Saved the final model of {best.searched.child_id} as {self.saved_names['best']} (and its per-class "
                   f"results).")

    def ended(self, search, population):
        if not search.settings["save_pareto_models"]:
            return
        folder = os.path.join(self.records.models_dir, "pareto")
        finals = {model.searched.child_id: model.final for model in search.final_models}
        saved = []
        for child_id, network, _ in search.front_members():
            if network.trained:
                network.take_results(self.records.network_state(child_id))
                network = finals.get(child_id, network)
                self.records.save_model(network, child_id, search.i_gen, folder)
                self.write_class_results(network, folder, f"{child_id}_")
                saved.append(child_id)
        search.say(f"Saved the Pareto front's models in {folder}: {', '.join(saved) or 'none (dry run)'}"
                   f"{' (their final models)' if finals else ''}.")


class ReportListener(Listener):
    """The run's reports, refreshed after every generation: pareto.csv, best_architecture.txt,
    summary.json, progress.png and tradeoff.png."""

    def __init__(self, records, device, thresholds, device_figures_shown):
        self.records, self.device, self.thresholds = records, device, thresholds
        self.device_figures_shown = device_figures_shown

    def generation_ended(self, search, population, children, improved):
        run_dir = self.records.run_dir
        self.write_front(search)
        if improved and search.absolute_best.trained:
            report.write_best_architecture(run_dir, search.absolute_best, self.device)
        report.write_summary(run_dir, search.clock.elapsed_seconds(), search.i_gen)
        report.plot_progress(run_dir)
        labels = {"latency_ms": f"latency on {self.device.name} (ms)", "energy_mj": f"energy on {self.device.name} (mJ)"}
        threshold_of = {figure: threshold for threshold, figure in HW_THRESHOLDS.items()}
        report.plot_tradeoff(run_dir, self.thresholds["flash_thr"], self.thresholds["ram_thr"],
                             [(figure, self.thresholds[threshold_of[figure]], labels[figure])
                              for figure in self.device_figures_shown])

    def final_trained(self, search, final_models):
        chosen = chosen_final(search)
        if chosen is not None:
            report.write_best_architecture(self.records.run_dir, chosen.final, self.device)
        report.write_summary(self.records.run_dir, search.clock.elapsed_seconds(), search.i_gen)

    def write_front(self, search):
        """pareto.csv: the networks no other trained network beats in every front objective,
        each with its own row of children.csv, objective values first."""
        fields = list(dict.fromkeys([*search.front_ranking.objectives.names, *PARETO_FIELDS]))
        records = {record["child_id"]: record for record in self.records.read()}
        rows = [dict(values, **records[child_id]) for child_id, _, values in search.front_members()]
        self.records.write_pareto(rows, fields)
        return rows


def chosen_final(search):
    """The final training's FinalModel (hwnas.search.final) the run saves as its best: the chosen
    finalist (None: no final training, or every finalist's failed)."""
    return next((model for model in search.final_models if model.chosen), None)


def final_record(model, max_search_sessions):
    """What models/best_model.json and summary.json say of a final training (a hwnas.search.final.FinalModel):
    what it trained on and how long, its score on the held-out sessions, and the search's scores beside."""
    searched, final = model.searched, model.final
    return {"sessions": model.sessions, "holdout_sessions": model.holdout_sessions,
            "epochs_trained": final.epochs_trained, "train_seconds": round(final.train_seconds or 0.0, 1),
            "holdout_val_accuracy": final.val_score, "search_val_accuracy": searched.val_score,
            "child_id": searched.child_id, "n_finalists": model.n_finalists,
            "search_val_f1": (searched.val_metrics or {}).get("f1"), "max_search_sessions": max_search_sessions,
            "phase_seconds": {phase: round(seconds, 2) for phase, seconds in final.phase_seconds.items()}}


class RunDescription:
    """The NAS log's set-up and summary text of a run (what LogListener writes at its start and end)."""

    def __init__(self, records, device, thresholds, constraints, executor_settings, device_figures_shown,
                 saved_names, budget, data, notices=()):
        self.data = data  # the whole SessionData (the search's candidates may see samples of it)
        self.notices = list(notices)  # settings this search cannot honour (hwnas.search.settings.unheeded)
        self.records, self.device, self.thresholds = records, device, thresholds
        self.constraints, self.executor_settings = constraints, executor_settings
        self.device_figures_shown, self.saved_names, self.budget = device_figures_shown, saved_names, budget

    def setup_lines(self, search, folds):
        data = self.data
        lines = [f"NAS run in {display_path(self.records.run_dir)}",
                 f"Data: {len(data.X_train)} training and {len(data.X_test)} test samples of length "
                 f"{data.input_shape[0]}, {data.num_classes} classes, {len(folds)} folds." + empty_labels_text(data),
                 *self.budget_lines(search, folds),
                 "Thresholds: " + ", ".join(f"{name} = {value if value is not None else 'none'}"
                                            for name, value in self.thresholds.items())
                 + ("" if self.constraints.check_hw else " (not checked: check_hw is False)")
                 + f"; flash and RAM for the {search.settings['deploy_precision']} deployment; latency and energy on "
                   f"{self.device.describe()}."]
        if self.constraints.custom_constraints:
            lines.append("User-defined constraints: " + ", ".join(self.constraints.custom_constraints) + ".")
        inputs = search.space.input_choices
        own = "; ".join(text for name in inputs["encoding"] if (text := ENCODINGS[name].describe_choices(inputs)))
        note = f" ({search.space.inputs_note})" if search.space.inputs_note else ""
        lines.append(f"Inputs searched: encodings {', '.join(inputs['encoding'])}{f' ({own})' if own else ''}; the "
                     f"first {', '.join(map(str, inputs['length']))} bytes of each session{note}.")
        directions = ", ".join(f"{name} ({direction})" for name, direction in search.ranking.objectives.directions.items())
        lines.append(f"Search strategy: {search.settings['search_strategy']}; objectives: {directions}; Pareto front "
                     f"over {', '.join(search.front_ranking.objectives.names)}.")
        settings = self.executor_settings
        where = "" if settings["executor"] == "local" else f" (Ray at {settings['ray_address'] or 'a new local instance'})"
        threads = settings["threads_per_worker"]
        lines.append(f"Evaluation: {settings['executor']} executor{where}, {settings['n_workers']} network"
                     f"{'s' * (settings['n_workers'] > 1)} at once, {threads} TensorFlow thread{'s' * (threads > 1)} each.")
        if self.budget.describe():
            lines.append(self.budget.describe())
        forest = report.reference_forest_of(self.records.run_dir)
        if forest is not None:
            forest = ReferenceForest.from_dict(forest)
            lines += [forest.line(), *([f"Warning: {forest.warning()}."] if forest.near_perfect else [])]
        return lines + [f"Note: {notice}." for notice in self.notices]

    def budget_lines(self, search, folds):
        """What the candidates train, are validated and tested on, and the final training."""
        settings, sampled = search.settings, search.sampled(folds)
        cap, lines = settings["max_search_sessions"], []
        if cap is not None:
            lines.append(f"Data budget (max_search_sessions={cap}): a candidate trains on {len(sampled[0][0])} of a "
                         f"fold's {len(folds[0][0])} training sessions, is validated on {len(sampled[0][1])} of its "
                         f"{len(folds[0][1])} and tested on {len(search.data.Y_test)} of the {len(self.data.Y_test)} test "
                         f"sessions (stratified samples, drawn once from the seed).")
        if settings["final_training"]:
            finalists = (f"the search's best {settings['final_candidates']} architectures (the best of them on a held-out "
                         f"tenth is kept)" if settings["final_candidates"] > 1 else "the best network")
            lines.append(f"Final training: {finalists}{' and the Pareto front' * settings['save_pareto_models']} "
                         f"trained again on every training session, at most {settings['final_epochs']} epochs, after "
                         f"the search{' (and its time budget)' if settings['time_budget_s'] else ''}.")
        return lines

    def summary_lines(self, search):
        best, trials, elapsed = search.absolute_best, search.trials, search.clock.elapsed_seconds()
        chosen = chosen_final(search)
        shown = best if chosen is None else chosen.searched  # the network whose model the run saved as its best
        figures = shown.figures()
        tested = best if chosen is None else chosen.final  # the final model when there is one
        test, deployed = tested.test_metrics, tested.deployed or {}
        lines = ["\n== Result ==",
                 f"Evaluated {trials.n_evaluated} networks ({trials.n_trained} trained, "
                 f"{trials.n_evaluated - trials.n_trained} reused) in {elapsed:.0f} s over {search.i_gen} generations "
                 f"({search.settings['search_strategy']}), {trials.n_trained * 3600 / max(elapsed, 1e-9):.0f} networks "
                 f"trained per hour.",
                 f"Absolute best: {best.child_id}, {best.architecture_text()}"]
        if shown is not best:
            lines += [f"  validation accuracy {best.val_score:.4f} (mean over the trained folds)",
                      f"Final model: {shown.child_id}, {shown.architecture_text()}",
                      f"  the best on the held-out sessions ({chosen.final.val_score:.4f}) of the {chosen.n_finalists} "
                      f"finalists trained again on every training session"]
        lines += [f"  params {figures.n_params}, max tensor {figures.max_tens} elements, FLOPs {figures.flops}",
                  f"  validation accuracy {shown.val_score:.4f} (mean over the trained folds)",
                  *(["  final model (trained again on every training session): its figures below"]
                    if chosen is not None and shown is best else []),
                  f"  test accuracy {test['accuracy']:.4f}, precision {test['precision']:.4f}, "
                  f"recall {test['recall']:.4f}, macro-F1 {test['f1']:.4f} (Keras, float32){over_classes(tested)}"]
        if deployed:
            lines += [f"  deployed as {shown.deploy_precision} TFLite: flash {deployed['flash_bytes']} B measured "
                      f"({figures.flash_size} B estimated), TFLM arena {deployed['arena_bytes']} B measured "
                      f"= {deployed['arena_activations']} activations + {deployed['arena_persistent']} persistent "
                      f"({figures.ram_size} B estimated)",
                      f"  test accuracy of the deployed model run by TFLM: {deployed['test_accuracy']:.4f}, "
                      f"macro-F1 {deployed['test_f1']:.4f}; per class: "
                      f"{display_path(os.path.join(self.records.run_dir, 'per_class.csv'))}"]
        if tested.trained:
            name = self.saved_names["best"]
            lines.append(f"  saved as {display_path(os.path.join(self.records.models_dir, name + '.keras'))} and "
                         f"{name}_{shown.deploy_precision}.tflite / .h beside it")
        lines.append(f"Pareto front over {', '.join(search.front_ranking.objectives.names)}: "
                     f"{len(search.front_members())} networks, in {display_path(self.records.pareto_path)}")
        return lines
