"""From packet captures to the IDX files B01_NAS.py searches on.

Edit the parameters below and run `python B00_pcap_to_idx.py`; any parameter can
also be overridden on the command line:
`python B00_pcap_to_idx.py input_dirs="['captures']" output_name=mine`.
Every .pcap / .pcapng / .cap file under input_dirs is cut into sessions, each
session's first `length` bytes becoming one sample, by one of two recipes:
  origin:      from the IP header on, anonymised, with timeouts (the parameters
               below). Writes <output_dir>/<output_name>_sessions.idx3 and _labels.idx1;
  USTC-TK2016: the USTC-TK2016 tool's sessions, byte for byte (hwnas.captures.ustc_tk2016):
               transport payloads (layers="L7") or whole frames as a pcap file
               ("all"), 784 bytes, and a test tenth. Writes the published file names:
               <output_name>-train-images-idx3-ubyte.gz, -train-labels-idx1-ubyte.gz,
               -t10k-images-idx3-ubyte.gz, -t10k-labels-idx1-ubyte.gz.
Both write _labels.json (class name -> label), _statistics.csv and _report.txt.
"""
import os
import signal
import sys

# input
input_dirs = ["captures"]  # folders searched (with their sub-folders) for .pcap, .pcapng and .cap files; relative to this folder or absolute
label_by = "folder"  # "folder": a class per folder under each input folder; "keywords": label_mapping's keywords in file names; "port": label_mapping's server ports
label_mapping = None  # label_by = "keywords": {keyword: class}, or "ISCX-VPN-nonVPN" / "USTC-TFC2016"; label_by = "port": {server port: class}

# recipe
recipe = "origin"  # "origin": this toolkit's sessions (the parameters below); "USTC-TK2016": the USTC-TK2016 tool's, byte for byte, as in the published USTC-TFC2016 and ISCX VPN-nonVPN IDX files
layers = "L7"  # recipe = "USTC-TK2016": "L7" (the transport payloads alone) or "all" (each session as a pcap file, link layer included)

# sessions
split = "session"  # "session": both directions of a 5-tuple together; "flow": each direction alone
length = 784  # bytes per session: cut or zero-padded to this (784 is stored as 28 x 28, any other as 1 x length)
udp_timeout_s = 10.0  # seconds without a packet after which a UDP session ends (the next packet starts a new one)
tcp_timeout_s = 120.0  # the same for TCP (a new connection on the same tuple after FIN or RST also starts a new session)
drop_dns = True  # True: drop sessions on ports 53, 5353, 5355 (DNS, mDNS, LLMNR lookups)
max_per_class = None  # sessions kept per class at most, a random sample drawn with seed (None = all)

# anonymisation (the link layer, and so every MAC address, is always dropped)
ip_addresses = "zero"  # "zero": set to 0; "remove": cut out of the IP header; "hash": a salted hash (the same address, the same bytes); "keep"
hash_salt = ""  # ip_addresses = "hash": the secret mixed into the hash ("" = a new random one each run, never written)
ports = "zero"  # "zero" or "keep" (a kept server port names the application, and so the label)
zero_header_fields = True  # True: zero IP identification, TTL / hop limit, IPv6 flow label and the IP, TCP and UDP checksums
pad_udp_header = True  # True: a UDP header is zero-padded from 8 to 20 bytes, so payload starts where TCP's does

# output
output_dir = "data"  # folder of the output files, relative to this folder or absolute
output_name = "sessions"  # prefix of the output file names
overwrite = False  # True: replace output files of the same name; False: refuse to
n_workers = 2  # capture files read at once, each by its own process
seed = 0  # seeds the per-class sample and the order of the sessions
# -----------------------------------------------------------------------------
parameters = {name: value for name, value in list(globals().items())
              if not name.startswith("_") and isinstance(value, (bool, int, float, str, list, dict, type(None)))}

from hwnas.common.files import display_path, path_as_parameter  # noqa: E402  (the parameters stay first)
from hwnas.common.overrides import ParameterError, check_count, parse_overrides  # noqa: E402

project_dir = os.path.dirname(os.path.abspath(__file__))
sys.stdout.reconfigure(errors="backslashreplace")  # a file name that is not UTF-8 is shown, not a crash
try:
    parameters.update(parse_overrides(sys.argv[1:], parameters))
except ParameterError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")
signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops it like Ctrl-C: nothing half-written

from hwnas.captures import capture as capture_lib  # noqa: E402
from hwnas.captures import labels as labels_lib  # noqa: E402
from hwnas.captures import dataset as dataset_lib  # noqa: E402
from hwnas.captures import sessions as sessions_lib  # noqa: E402
from hwnas.captures import ustc_tk2016 as ustc_lib  # noqa: E402

from tqdm import tqdm  # noqa: E402

# check everything before a capture is read
RECIPES = ("origin", "USTC-TK2016")
try:
    if parameters["recipe"] not in RECIPES:
        raise ValueError(f"recipe={parameters['recipe']!r}: must be one of {', '.join(RECIPES)}")
    ustc = parameters["recipe"] == "USTC-TK2016"
    if ustc:
        settings, read_file = ustc_lib.settings_of(parameters), ustc_lib.sessions_of_file
    else:
        if parameters["layers"] != "L7":
            raise ValueError(f"layers={parameters['layers']!r}: layers are the USTC-TK2016 recipe's; "
                             f"set recipe='USTC-TK2016', or leave layers as it is")
        settings, read_file = sessions_lib.session_settings(parameters), sessions_lib.sessions_of_file
    rules = labels_lib.check_labelling(parameters["label_by"], parameters["label_mapping"])
    check_count("n_workers", parameters["n_workers"], minimum=1)
    check_count("seed", parameters["seed"], minimum=0)
    if parameters["max_per_class"] is not None:
        check_count("max_per_class", parameters["max_per_class"], minimum=1)
    if (not isinstance(parameters["input_dirs"], list) or not parameters["input_dirs"]
            or not all(isinstance(folder, str) and folder for folder in parameters["input_dirs"])):
        raise ValueError(f"input_dirs={parameters['input_dirs']!r}: must be a list of folder names (text)")
    input_dirs = [os.path.join(project_dir, folder) for folder in parameters["input_dirs"]]
    dataset_lib.check_output_name(parameters["output_name"])
    output_dir = os.path.join(project_dir, parameters["output_dir"])
    output_paths = (ustc_lib.output_paths if ustc else dataset_lib.output_paths)(output_dir, parameters["output_name"])
    dataset_lib.check_output(output_paths, parameters["overwrite"])
    captures, notes = capture_lib.find_captures(input_dirs)
except ValueError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")

# label the files
file_classes = {}
for input_dir, paths in captures.items():
    if not paths and not any(note.startswith(input_dir + ":") for note in notes):
        notes.append(f"input_dirs: {input_dir} holds no .pcap, .pcapng or .cap file")
    for path in paths:
        name, why_not = labels_lib.file_label(path, input_dir, parameters["label_by"], rules)
        if why_not:
            notes.append(f"{path}: skipped, no rule labels it ({why_not})")
        else:
            file_classes[path] = name
for note in notes:
    print(note, file=sys.stderr)
if not file_classes:
    sys.exit("B00_pcap_to_idx.py: no capture file to convert (see above)")

# read the sessions of every file, n_workers files at a time
total_bytes = sum(capture_lib.file_size(path) for path in file_classes)
print(f"Reading {len(file_classes)} capture files ({total_bytes / 1e6:.1f} MB) with {parameters['n_workers']} "
      f"worker(s)")
bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="captures", postfix={"files": f"0/{len(file_classes)}"})
files_done = []


def file_done(path, result):
    files_done.append(path)
    bar.set_postfix(files=f"{len(files_done)}/{len(file_classes)}")
    problem = result if isinstance(result, capture_lib.CaptureError) else (
        f"{path}: {result.damage}; the packets before it are used" if result.damage else None)
    if problem:
        notes.append(str(problem))
        tqdm.write(str(problem), file=sys.stderr)


try:
    results = sessions_lib.sessions_of_files(sorted(file_classes), settings, parameters["n_workers"],
                                             on_progress=bar.update, on_file=file_done, read_file=read_file)
except KeyboardInterrupt:
    bar.close()
    sys.exit("\nInterrupted: nothing was written.")
bar.close()
read = {path: result for path, result in results.items() if not isinstance(result, capture_lib.CaptureError)}
if not read:
    sys.exit("B00_pcap_to_idx.py: no capture file could be read (see above); nothing was written")

try:
    # the dataset: labels, duplicates, the per-class cap, the order (and the USTC recipe's test tenth)
    if ustc:
        dataset = ustc_lib.build_dataset(read, file_classes, parameters["label_by"], rules, parameters["seed"])
        n_sessions = len(dataset.train[1]) + len(dataset.test[1])
    else:
        dataset = dataset_lib.build_dataset(read, file_classes, parameters["label_by"], rules, parameters["length"],
                                            parameters["max_per_class"], parameters["seed"])
        n_sessions = len(dataset.labels)
    notes += dataset.notes
    warnings = dataset_lib.class_warnings(dataset.statistics)
    file_totals = {key: sum(result.counts[key] for result in read.values()) for key in sessions_lib.FILE_COUNTS}

    # report and write (a dataset of fewer than two classes is refused: nothing to classify)
    table = dataset_lib.statistics_table(dataset.statistics)
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if len(dataset.class_numbers) < 2:
        n_classes = len(dataset.class_numbers)
        for note in dataset.notes:
            print(f"- {note}", file=sys.stderr)
        sys.exit(f"\n{table}\n\nB00_pcap_to_idx.py: {n_classes} class{'es' * (n_classes != 1)} kept (see the "
                 f"table and the notes above); B01_NAS.py needs two at least, so nothing was written")
    shown_parameters = {name: ("(secret)" if name == "hash_salt" and value else value)
                        for name, value in parameters.items()}
    length = ustc_lib.SESSION_BYTES if ustc else parameters["length"]
    split_text = f" ({len(dataset.test[1])} of them the test set)" if ustc else ""
    report = "\n".join([
        f"{n_sessions} sessions{split_text} of {length} bytes, {len(dataset.class_numbers)} classes, "
        f"from {len(read)} capture files (recipe {parameters['recipe']})",
        "", table, "",
        "Read: " + ", ".join(f"{value} {key.replace('_', ' ').replace('ip ', 'IP ').replace('dns', 'DNS')}"
                             for key, value in file_totals.items()),
        "", "Warnings:" if warnings else "Warnings: none", *[f"- {warning}" for warning in warnings],
        "", "Notes:" if notes else "Notes: none", *[f"- {note}" for note in notes],
        "", "Parameters:", *[f"  {name} = {value!r}" for name, value in shown_parameters.items()], ""])
    contents = dict(ustc_lib.dataset_contents(dataset) if ustc else dataset_lib.dataset_contents(dataset),
                    **dataset_lib.text_contents(dataset, report))
    paths = dataset_lib.write_files(contents, output_paths)
except ValueError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")
except KeyboardInterrupt:  # Ctrl-C while the dataset is made or written: write_files leaves nothing half-written
    sys.exit("\nInterrupted: no output file was written or left half-written.")
print("\n" + table)
if warnings:
    print(f"\n{len(warnings)} warnings (also in {display_path(paths['report'])}):")
    for warning in warnings:
        print(f"- {warning}")
if notes:
    print(f"\n{len(notes)} notes (also in {display_path(paths['report'])}):")
    for note in notes[:20]:
        print(f"- {note}")
relative = {what: path_as_parameter(path, project_dir) for what, path in paths.items()}
if ustc:
    print(f"\nWrote {n_sessions} sessions: {relative['train_images']}, {relative['train_labels']}, "
          f"{relative['test_images']}, {relative['test_labels']}, {relative['classes']}, {relative['statistics']}, "
          f"{relative['report']}")
    print(f"Search them: python B01_NAS.py images_path={relative['train_images']} "
          f"labels_path={relative['train_labels']} test_images_path={relative['test_images']} "
          f"test_labels_path={relative['test_labels']}")
else:
    print(f"\nWrote {n_sessions} sessions: {relative['images']}, {relative['labels']}, "
          f"{relative['classes']}, {relative['statistics']}, {relative['report']}")
    print(f"Search them: python B01_NAS.py images_path={relative['images']} labels_path={relative['labels']}")
