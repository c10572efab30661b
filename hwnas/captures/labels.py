"""Class labels of sessions: by folder, by keywords in file names, or by server port,
with the keyword presets of the public capture sets.

Labels are class names; their integers are given at the end in sorted name
order (class_numbers), so no listing order of any file system changes them.
"""
import os

from hwnas.common.numbers import is_integer

LABEL_BY_CHOICES = ("folder", "keywords", "port")


def _iscx_vpn_nonvpn():
    """ISCX VPN-nonVPN 2016 (Draper-Gil et al., ICISSP 2016), the 12 classes of Wang et
    al. 2017 (six traffic types, each without and through a VPN): the keywords of its
    capture file names. Browsing is not among the 12, so its files stay unlabelled.
    Video calls (facebook_video, hangouts_video, skype_video) count as VoIP, as the
    dataset's description groups calls; change the dict to decide otherwise."""
    traffic_types = {
        "Chat": ["aim_chat", "aimchat", "facebook_chat", "facebookchat", "hangout_chat", "hangouts_chat",
                 "icq_chat", "icqchat", "skype_chat", "gmailchat"],
        "Email": ["email"],
        "File": ["ftps", "sftp", "scp", "skype_file"],
        "P2P": ["torrent", "bittorrent"],
        "Streaming": ["netflix", "spotify", "vimeo", "youtube"],
        "VoIP": ["facebook_audio", "hangouts_audio", "skype_audio", "voipbuster", "facebook_video",
                 "hangouts_video", "skype_video"],
    }
    mapping = {}
    for traffic_type, keywords in traffic_types.items():
        for keyword in keywords:
            mapping[keyword] = traffic_type
            mapping["vpn_" + keyword] = "VPN-" + traffic_type  # the VPN captures are named vpn_<application>...
    return mapping


# USTC-TFC2016 (Wang et al., ICOIN 2017): 10 benign applications and 10 malware families,
# one capture file (or a few, "-1", "-2") per class, named after it.
USTC_TFC2016_CLASSES = ("BitTorrent", "Facetime", "FTP", "Gmail", "MySQL", "Outlook", "Skype", "SMB", "Weibo",
                        "WorldOfWarcraft", "Cridex", "Geodo", "Htbot", "Miuref", "Neris", "Nsis-ay", "Shifu",
                        "Tinba", "Virut", "Zeus")
LABEL_PRESETS = {
    "ISCX-VPN-nonVPN": _iscx_vpn_nonvpn(),
    "USTC-TFC2016": {name.lower(): name for name in USTC_TFC2016_CLASSES},
}


class LabelError(ValueError):
    """label_by or label_mapping cannot label anything; the message names the parameter."""


def check_labelling(label_by, label_mapping):
    """label_mapping as the rules label_by uses: None for "folder", {keyword: class}
    for "keywords" (a preset's name is replaced by its dict), {port: class} for "port".
    Raises LabelError naming the parameter that is wrong."""
    if label_by not in LABEL_BY_CHOICES:
        raise LabelError(f"label_by={label_by!r}: must be one of {', '.join(LABEL_BY_CHOICES)}")
    if label_by == "folder":
        if label_mapping is not None:
            raise LabelError("label_mapping is used by label_by='keywords' or 'port'; with label_by='folder' "
                             "each folder is a class, so leave label_mapping = None")
        return None
    if label_by == "keywords" and isinstance(label_mapping, str):
        if label_mapping not in LABEL_PRESETS:
            raise LabelError(f"label_mapping={label_mapping!r}: not a preset ({', '.join(LABEL_PRESETS)}); "
                             f"or give a dict {{keyword: class}}")
        return dict(LABEL_PRESETS[label_mapping])
    if not isinstance(label_mapping, dict) or not label_mapping:
        shape = "{keyword: class}, or a preset's name" if label_by == "keywords" else "{server port: class}"
        raise LabelError(f"label_by={label_by!r} needs label_mapping = {shape}; it is {label_mapping!r}")
    if label_by == "keywords":
        bad = [keyword for keyword in label_mapping if not isinstance(keyword, str) or not keyword]
        if bad:
            raise LabelError(f"label_mapping: keywords must be non-empty text; {bad!r} are not")
        return {keyword.lower(): str(name) for keyword, name in label_mapping.items()}
    bad = [port for port in label_mapping if not is_integer(port)
           or not 0 <= port <= 65535]
    if bad:
        raise LabelError(f"label_mapping: ports must be integers from 0 to 65535; {bad!r} are not")
    return {port: str(name) for port, name in label_mapping.items()}


def file_label(path, input_dir, label_by, rules):
    """(class name, None) of a capture file, or (None, why no rule labels it).

    "folder": the first folder under input_dir that holds the file (a file right
    in input_dir takes input_dir's own name). "keywords": the rule whose keyword
    is the longest one found in the file's name (case-insensitive); two classes
    tied at the longest are ambiguous. "port": (None, None), sessions are labelled
    one by one (session_label).
    """
    if label_by == "port":
        return None, None
    if label_by == "folder":
        relative = os.path.relpath(path, input_dir).split(os.sep)
        return readable_name(relative[0] if len(relative) > 1 else os.path.basename(os.path.abspath(input_dir))), None
    name = os.path.basename(path).lower()
    found = [(len(keyword), rules[keyword]) for keyword in rules if keyword in name]
    if not found:
        return None, "no keyword of label_mapping is in its name"
    longest = max(length for length, _ in found)
    classes = sorted({name for length, name in found if length == longest})
    if len(classes) > 1:
        return None, f"its name matches keywords of {len(classes)} classes equally ({', '.join(classes)})"
    return classes[0], None


def readable_name(name):
    """A folder name as text that can be written and printed: bytes that are not UTF-8 (which
    Python keeps as surrogates) become \\xNN escapes, so 'caf\\xe9' names the class of a
    Latin-1 folder 'café'."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def session_label(server_port, client_port, rules):
    """The class of a session labelled by port: its server port's, else its other port's
    (a capture can start with the server's packet of a running connection); None if neither."""
    name = rules.get(server_port)
    return name if name is not None else rules.get(client_port)


def class_numbers(class_names, case_insensitive=False):
    """{class name: integer label}, the names in sorted order: the same mapping whatever
    order the files were found or converted in. case_insensitive: "Facetime" before "FTP",
    as a Windows folder listing sorts (the USTC-TK2016 files' labels)."""
    key = (lambda name: (name.lower(), name)) if case_insensitive else None
    return {name: number for number, name in enumerate(sorted(set(class_names), key=key))}
