"""From packet captures to the IDX files B01_NAS.py searches on.

Edit the parameters below and run `python B00_pcap_to_idx.py`; any parameter can
also be overridden on the command line:
`python B00_pcap_to_idx.py input_dirs="['captures']" output_name=mine`.
Every .pcap / .pcapng / .cap file under input_dirs is cut into sessions, each
session's first `length` bytes (from the IP header on, anonymised) become one
sample. Writes <output_dir>/<output_name>_sessions.idx3, _labels.idx1,
_labels.json (class name -> label), _statistics.csv and _report.txt.
"""
import os
import signal
import sys

# input
input_dirs = ["captures"]  # folders searched (with their sub-folders) for .pcap, .pcapng and .cap files; relative to this folder or absolute
label_by = "folder"  # "folder": a class per folder under each input folder; "keywords": label_mapping's keywords in file names; "port": label_mapping's server ports
label_mapping = None  # label_by = "keywords": {keyword: class}, or "ISCX-VPN-nonVPN" / "USTC-TFC2016"; label_by = "port": {server port: class}

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

import library_config  # noqa: E402  (the parameters above stay the first thing a reader sees)

project_dir = os.path.dirname(os.path.abspath(__file__))
try:
    parameters.update(library_config.parse_overrides(sys.argv[1:], parameters))
except library_config.ParameterError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")
signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops it like Ctrl-C: nothing half-written

import library_capture as capture_lib  # noqa: E402
import library_labels as labels_lib  # noqa: E402
import library_session_dataset as dataset_lib  # noqa: E402
import library_sessions as sessions_lib  # noqa: E402

from tqdm import tqdm  # noqa: E402

# check everything before a capture is read
try:
    settings = sessions_lib.session_settings(parameters)
    rules = labels_lib.check_labelling(parameters["label_by"], parameters["label_mapping"])
    library_config.check_count("n_workers", parameters["n_workers"], minimum=1)
    library_config.check_count("seed", parameters["seed"], minimum=0)
    if parameters["max_per_class"] is not None:
        library_config.check_count("max_per_class", parameters["max_per_class"], minimum=1)
    if not isinstance(parameters["input_dirs"], list) or not parameters["input_dirs"]:
        raise ValueError(f"input_dirs={parameters['input_dirs']!r}: must be a list of folders")
    input_dirs = [os.path.join(project_dir, folder) for folder in parameters["input_dirs"]]
    captures = capture_lib.find_captures(input_dirs)
    output_dir = os.path.join(project_dir, parameters["output_dir"])
    dataset_lib.check_output(output_dir, parameters["output_name"], parameters["overwrite"])
except ValueError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")

# label the files
notes = []
file_classes = {}
for input_dir, paths in captures.items():
    if not paths:
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
total_bytes = sum(os.path.getsize(path) for path in file_classes)
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
                                             on_progress=bar.update, on_file=file_done)
except KeyboardInterrupt:
    bar.close()
    sys.exit("\nInterrupted: nothing was written.")
bar.close()
read = {path: result for path, result in results.items() if not isinstance(result, capture_lib.CaptureError)}
if not read:
    sys.exit("B00_pcap_to_idx.py: no capture file could be read (see above); nothing was written")

# the dataset: labels, duplicates, the per-class cap, the order
dataset = dataset_lib.build_dataset(read, file_classes, parameters["label_by"], rules, parameters["length"],
                                    parameters["max_per_class"], parameters["seed"])
notes += dataset.notes
if len(dataset.class_numbers) < 2:
    notes.append(f"{len(dataset.class_numbers)} class kept: B01_NAS.py needs two at least")
file_totals = {key: sum(result.counts[key] for result in read.values()) for key in sessions_lib.FILE_COUNTS}

# report and write
table = dataset_lib.statistics_table(dataset.statistics)
if not len(dataset.labels):
    sys.exit(f"\n{table}\n\nB00_pcap_to_idx.py: no session kept (see the table and the notes above); "
             f"nothing was written")
shown_parameters = {name: ("(secret)" if name == "hash_salt" and value else value)
                    for name, value in parameters.items()}
report = "\n".join([
    f"{len(dataset.labels)} sessions of {parameters['length']} bytes, {len(dataset.class_numbers)} classes, "
    f"from {len(read)} capture files",
    "", table, "",
    "Read: " + ", ".join(f"{value} {key.replace('_', ' ').replace('ip ', 'IP ').replace('dns', 'DNS')}"
                         for key, value in file_totals.items()),
    "", "Notes:" if notes else "Notes: none", *[f"- {note}" for note in notes],
    "", "Parameters:", *[f"  {name} = {value!r}" for name, value in shown_parameters.items()], ""])
try:
    paths = dataset_lib.write_dataset(dataset, output_dir, parameters["output_name"], report)
except ValueError as error:
    sys.exit(f"B00_pcap_to_idx.py: {error}")
print("\n" + table)
if notes:
    print(f"\n{len(notes)} notes (also in {library_config.display_path(paths['report'])}):")
    for note in notes[:20]:
        print(f"- {note}")
relative = {what: library_config.path_as_parameter(path, project_dir) for what, path in paths.items()}
print(f"\nWrote {len(dataset.labels)} sessions: {relative['images']}, {relative['labels']}, "
      f"{relative['classes']}, {relative['statistics']}, {relative['report']}")
print(f"Search them: python B01_NAS.py images_path={relative['images']} labels_path={relative['labels']}")
