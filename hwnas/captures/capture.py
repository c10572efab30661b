"""Capture files: finding them, reading their packets (pcap and pcapng), and
reading the packets' link, IP and transport headers.

A capture is read in blocks of READ_BLOCK_BYTES, so memory does not grow with
the file, and its packets are handed on a block at a time: the block's bytes
and numpy arrays of where each packet starts and ends, when it was captured and
on which link type. Both formats are walked here rather than by dpkt's readers:
dpkt.pcap.Reader alone delivers about 210,000 packets/s on this machine and
dpkt's full decode about 34,000, while the whole session step must reach
200,000 packets/s per core (docs/benchmark_pcap.md); the tests check
every packet against dpkt's readers. A block's headers are read at once with
numpy (block_headers), so the per-packet Python work left is the session table's.
"""
import collections
import os
import struct
from typing import NamedTuple

import numpy as np

READ_BLOCK_BYTES = 4 << 20
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")

# pcap: magic in the file's byte order -> (byte order, timestamp fraction unit in seconds)
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
PCAPNG_SECTION_HEADER = b"\x0a\x0d\x0d\x0a"
MAX_PACKET_BYTES = 1 << 18  # larger than any link's packet (Linux loopback's 64 kB MTU, jumbo frames, TSO)
MAX_BLOCK_BYTES = 1 << 24  # a pcapng block larger than this is damage, not data

ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad (QinQ) and its older tag
IPV6_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options: (length + 1) x 8 bytes
IPV6_FRAGMENT, IPV6_AUTHENTICATION = 44, 51
TCP, UDP = 6, 17

# The link layers a session can be taken from (LINKTYPE_* numbers of tcpdump.org).
LINKTYPE_NAMES = {0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 101: "raw IP", 108: "OpenBSD loopback",
                  113: "Linux cooked capture", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked capture v2"}


class CaptureError(ValueError):
    """A capture file cannot be read (from some point on); the message names the file."""


def find_captures(input_dirs):
    """Every capture file (.pcap, .pcapng, .cap) under each folder of input_dirs, recursively.

    Returns ({folder: sorted list of paths} in the order of input_dirs, notes): the sort
    makes every later step independent of the file system's listing order; the notes
    name what could not be looked into or read (a folder without permission, a link to
    nothing or to itself named like a capture), which is left out. Raises CaptureError
    naming a folder of input_dirs that does not exist or is not a folder.
    """
    found, notes = {}, []
    for folder in input_dirs:
        if not os.path.isdir(folder):
            reason = "does not exist" if not os.path.exists(folder) else "is not a folder"
            raise CaptureError(f"input_dirs: {folder} {reason}")
        paths = []

        def unreadable(error):
            notes.append(f"{error.filename}: cannot be read ({error.strerror or error}); the captures in it, "
                         f"if any, are not converted")

        for parent, subfolders, names in os.walk(folder, onerror=unreadable):
            subfolders.sort()
            for name in names:
                path = os.path.join(parent, name)
                if not name.lower().endswith(CAPTURE_SUFFIXES):
                    continue
                if not os.path.isfile(path):  # a link to nothing, to itself, or to a folder
                    notes.append(f"{path}: skipped, a link that leads to no file")
                    continue
                paths.append(path)
        found[folder] = sorted(paths)
    return found, notes


def file_size(path):
    """Bytes of the file at path, 0 when it cannot be looked at (it vanished, no permission)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class PacketBlock(NamedTuple):
    """The packets of one block of a capture: packet i is buffer[starts[i]:stops[i]],
    captured at timestamps[i] (seconds) on a link of type linktypes[i], original_lengths[i]
    bytes long on the wire (its record's field; more than captured when the snap length cut it)."""
    buffer: bytes
    starts: np.ndarray
    stops: np.ndarray
    timestamps: np.ndarray
    linktypes: np.ndarray
    original_lengths: np.ndarray


class CaptureReader:
    """The packets of one capture file, read in blocks of READ_BLOCK_BYTES.

    blocks() yields a PacketBlock per block read (no copy is made per packet);
    packets() yields (timestamp_s, linktype, packet_bytes) one by one. A file
    that ends inside a packet, or is damaged from some point on, yields the
    packets before that point; the reason is then in .damage (else None), so the
    caller can report it and keep what was read. Raises CaptureError when the
    file is not a capture at all (the message names the file and its first bytes).
    """

    def __init__(self, path):
        self.path = path
        self.damage = None
        self.bytes_read = 0  # how far into the file the blocks yielded so far reach

    def blocks(self):
        file = open(self.path, "rb")
        head = file.read(4)
        file.seek(0)
        if head in PCAP_MAGICS:
            return self._pcap_blocks(file)
        if head == PCAPNG_SECTION_HEADER:
            return self._pcapng_blocks(file)
        file.close()
        shown = head.hex(" ") if head else "nothing (an empty file)"
        raise CaptureError(f"{self.path}: not a pcap or pcapng capture (it starts with {shown})")

    def packets(self):
        for block in self.blocks():
            for start, stop, timestamp, linktype in zip(block.starts.tolist(), block.stops.tolist(),
                                                         block.timestamps.tolist(), block.linktypes.tolist()):
                yield timestamp, linktype, block.buffer[start:stop]

    def _pcap_blocks(self, file):
        with file:  # closed when the blocks end, or when the caller stops early
            header = file.read(24)
            if len(header) < 24:
                raise CaptureError(f"{self.path}: pcap file header cut short ({len(header)} of 24 bytes)")
            order, fraction_s = PCAP_MAGICS[header[:4]]
            linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF  # high bits: FCS flags
            unpack_captured = struct.Struct(order + "I").unpack_from
            record_fields = np.dtype(order + "u4")  # seconds, fraction, captured length, original length

            def walk(buffer, position):
                offset, end = 0, len(buffer)
                last_header = end - 16
                records = []  # where each whole record of the block starts
                note = records.append
                while offset <= last_header:  # the one per-packet loop of reading: lengths chain the records
                    captured = unpack_captured(buffer, offset + 8)[0]
                    stop = offset + 16 + captured
                    if stop > end or captured > MAX_PACKET_BYTES:
                        break
                    note(offset)
                    offset = stop
                damage = None
                if offset <= last_header and captured > MAX_PACKET_BYTES:
                    damage = (f"the record at byte {position + offset} claims {captured} bytes: "
                              f"the file is damaged from there")
                if not records:
                    return None, offset, damage
                record_starts = np.array(records, dtype=np.int64)
                heads = np.frombuffer(buffer, np.uint8)[record_starts[:, None] + np.arange(16)]
                fields = heads.view(record_fields).astype(np.int64)  # (packets, 4)
                return PacketBlock(buffer, record_starts + 16, record_starts + 16 + fields[:, 2],
                                   fields[:, 0] + fields[:, 1] * fraction_s,
                                   np.full(len(records), linktype, dtype=np.int64), fields[:, 3]), offset, damage

            yield from self._read_blocks(file, 24, walk, "packet")

    def _pcapng_blocks(self, file):
        with file:  # closed when the blocks end, or when the caller stops early
            # of the current section: its byte order, its interfaces' (linktype, unit s, offset s, snaplen)
            state = {"order": "<", "interfaces": []}

            def walk(buffer, position):
                packets = []  # (start, stop, timestamp, linktype, original length) of each packet of the block
                walked = self._walk_pcapng(buffer, 0, len(buffer), position, state["order"], state["interfaces"],
                                           packets)
                state["order"] = walked.order
                if not packets:
                    return None, walked.offset, walked.reason
                starts, stops, timestamps, linktypes, original_lengths = zip(*packets)
                return PacketBlock(buffer, np.array(starts, dtype=np.int64), np.array(stops, dtype=np.int64),
                                   np.array(timestamps, dtype=np.float64), np.array(linktypes, dtype=np.int64),
                                   np.array(original_lengths, dtype=np.int64)), walked.offset, walked.reason

            yield from self._read_blocks(file, 0, walk, "block")

    def _read_blocks(self, file, position, walk, record_name):
        """What both formats share: reads the file in blocks, hands each (with what was left of
        the one before) to walk(buffer, position) -> (PacketBlock or None, where its whole
        records end, damage or None), and yields the PacketBlocks; notes damage and a truncated end."""
        buffer, offset = b"", 0
        while True:
            block = file.read(READ_BLOCK_BYTES)
            if not block:
                break
            buffer = buffer[offset:] + block
            packets, offset, damage = walk(buffer, position)
            if packets is not None:
                yield packets
            if damage:
                self.damage = damage
                return
            position += offset
            self.bytes_read = position
        if len(buffer) > offset:
            self.damage = (f"the last {record_name} is cut short ({len(buffer) - offset} bytes from byte {position}): "
                           f"the capture was truncated")

    def _walk_pcapng(self, buffer, offset, end, position, order, interfaces, packets):
        """Appends the packets of buffer's whole pcapng blocks from offset on to packets (and
        the interfaces described to interfaces). Returns _Walked: where it stopped, the byte
        order then, and the damage found (or None)."""
        note = packets.append
        while offset + 12 <= end:
            if buffer[offset:offset + 4] == PCAPNG_SECTION_HEADER:  # a section may change the byte order
                magic = buffer[offset + 8:offset + 12]
                if magic not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    return _Walked(offset, order, f"the section header at byte {position + offset} has no "
                                                  f"byte-order magic")
                order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
                interfaces.clear()
            block_type, block_length = struct.unpack_from(order + "II", buffer, offset)
            if block_length < 12 or block_length % 4 or block_length > MAX_BLOCK_BYTES:
                return _Walked(offset, order, f"the block at byte {position + offset} claims {block_length} bytes: "
                                              f"the file is damaged from there")
            if offset + block_length > end:
                break
            trailing_length = struct.unpack_from(order + "I", buffer, offset + block_length - 4)[0]
            if trailing_length != block_length:  # a changed length field would swallow the blocks after it
                return _Walked(offset, order, f"the block at byte {position + offset} claims {block_length} bytes at "
                                              f"its start and {trailing_length} at its end: the file is damaged "
                                              f"from there")
            minimum = {6: 32, 3: 16, 2: 32}.get(block_type, 12)  # with their fixed fields
            if block_length < minimum:
                return _Walked(offset, order, f"the packet block at byte {position + offset} is {block_length} "
                                              f"bytes, shorter than its fixed fields ({minimum}): the file is "
                                              f"damaged from there")
            body = offset + 8
            if block_type in (6, 3, 2):  # enhanced, simple and (obsolete) packet blocks
                if block_type == 6:
                    interface, high, low, captured, original = struct.unpack_from(order + "IIIII", buffer, body)
                    start, ticks = body + 20, (high << 32) | low
                elif block_type == 3:  # interface 0, no timestamp
                    interface, ticks, start = 0, None, body + 4
                    original = struct.unpack_from(order + "I", buffer, body)[0]
                    captured = min(original, block_length - 16, interfaces[0][3] if interfaces else original)
                else:
                    interface, _, high, low, captured, original = struct.unpack_from(order + "HHIIII", buffer, body)
                    start, ticks = body + 20, (high << 32) | low
                if start + captured > offset + block_length - 4:
                    return _Walked(offset, order, f"the packet at byte {position + offset} claims {captured} bytes, "
                                                  f"more than its block holds: the file is damaged from there")
                if interface >= len(interfaces):
                    return _Walked(offset, order, f"the packet at byte {position + offset} names interface "
                                                  f"{interface}, which the file never described")
                linktype, unit_s, offset_s, _ = interfaces[interface]
                note((start, start + captured, offset_s + ticks * unit_s if ticks is not None else 0.0, linktype,
                      original))
            elif block_type == 1:  # interface description
                interfaces.append(_interface(buffer[body:offset + block_length - 4], order))
            offset += block_length
        return _Walked(offset, order, None)


class _Walked(NamedTuple):
    offset: int
    order: str
    reason: object


def _interface(body, order):
    """(linktype, timestamp unit in seconds, timestamp offset in seconds, snaplen) of an
    interface description block's body (block type and length excluded)."""
    linktype, _, snaplen = struct.unpack_from(order + "HHI", body, 0)
    unit_s, offset_s = 1e-6, 0.0  # pcapng's default resolution: microseconds
    position = 8
    while position + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, position)
        value = body[position + 4:position + 4 + length]
        if code == 0:  # end of options
            break
        if code == 9 and length >= 1:  # if_tsresol: a power of 10, or of 2 when the high bit is set
            unit_s = 2.0 ** -(value[0] & 0x7F) if value[0] & 0x80 else 10.0 ** -value[0]
        elif code == 14 and length >= 8:  # if_tsoffset: seconds added to every timestamp
            offset_s = float(struct.unpack_from(order + "q", value, 0)[0])
        position += 4 + (length + 3) // 4 * 4
    return linktype, unit_s, offset_s, snaplen or MAX_PACKET_BYTES


# What the headers of a packet make it, in the order they are looked at.
HEADER_OUTCOMES = ("ok", "unknown_link_packets", "malformed_packets", "not_ip_packets", "fragment_packets",
                    "other_protocol_packets")
_OK, _UNKNOWN_LINK, _MALFORMED, _NOT_IP, _FRAGMENT, _OTHER_PROTOCOL = range(len(HEADER_OUTCOMES))
MAX_VLAN_TAGS = 4
MAX_IPV6_EXTENSIONS = 8


class BlockHeaders(NamedTuple):
    """columns: per packet that has TCP or UDP headers, in block order, the lists (key,
    timestamp_s, flags, is_tcp, IP bytes, has payload, IP start, transport start, end of
    what was captured of the IP packet, IP version, payload start, the packet's index in
    the block); outcome_counts: packets per
    HEADER_OUTCOMES; unknown_linktypes: {linktype: packets} of links not read."""
    columns: tuple
    outcome_counts: list
    unknown_linktypes: dict


def block_headers(block):
    """Every packet's link, IP and transport headers of a block, read at once with numpy.

    A read past a packet's end (a packet shorter than its headers) is never
    trusted: every field a kept packet is read by lies before its transport
    header's end, which is checked against the packet's end.
    """
    data = np.frombuffer(block.buffer, np.uint8)
    fields = _Fields(data)
    starts, stops, linktypes = block.starts, block.stops, block.linktypes
    ethertype, o = _link_layer(fields, starts, linktypes)
    ip = _ip_layer(fields, ethertype, o, stops)
    is_ipv4, is_ipv6, version_ihl, ip_end, protocol, t, later_fragment = ip

    # the transport header
    is_tcp, is_udp = protocol == TCP, protocol == UDP
    data_offset = fields.at(t + 12) >> 4
    header_end = np.where(is_tcp, t + (data_offset << 2), t + 8)
    outcome = np.select(
        [ethertype < 0, o + 20 > stops, ~(is_ipv4 | is_ipv6), is_ipv4 & ((version_ihl & 0x0F) < 5), later_fragment,
         ~(is_tcp | is_udp), (header_end > stops) | (header_end > ip_end) | (is_tcp & (data_offset < 5))],
        [_UNKNOWN_LINK, _MALFORMED, _NOT_IP, _MALFORMED, _FRAGMENT, _OTHER_PROTOCOL, _MALFORMED], _OK)
    outcome_counts = np.bincount(outcome, minlength=len(HEADER_OUTCOMES)).tolist()
    unknown = collections.Counter(linktypes[outcome == _UNKNOWN_LINK].tolist()) if outcome_counts[1] else {}

    # the session key of each kept packet: IP version, both addresses (IPv4's zero-padded to IPv6's 32 bytes), ports
    kept = np.flatnonzero(outcome == _OK)
    kept_ipv4 = is_ipv4[kept]
    addresses = data[np.minimum(np.where(kept_ipv4, o[kept] + 12, o[kept] + 8)[:, None] + np.arange(32), fields.last)]
    addresses[kept_ipv4, 8:] = 0
    keys = np.concatenate([np.where(kept_ipv4, 4, 6).astype(np.uint8)[:, None], addresses,
                           data[t[kept][:, None] + np.arange(4)]], axis=1)
    columns = (np.ascontiguousarray(keys).view(f"V{keys.shape[1]}").ravel().tolist(),
               block.timestamps[kept].tolist(), np.where(is_tcp, fields.at(t + 13), 0)[kept].tolist(),
               is_tcp[kept].tolist(), (ip_end - o)[kept].tolist(), (ip_end > header_end)[kept].tolist(),
               o[kept].tolist(), t[kept].tolist(), np.minimum(ip_end, stops)[kept].tolist(),
               np.where(kept_ipv4, 4, 6).tolist(), header_end[kept].tolist(), kept.tolist())
    return BlockHeaders(columns, outcome_counts, unknown)


class _Fields:
    """Reads of a block's bytes at arrays of positions (clamped to the block: a read past a
    packet is never trusted, see block_headers)."""

    def __init__(self, data):
        self.data, self.last = data, len(data) - 1

    def at(self, index):
        return self.data[np.minimum(index, self.last)].astype(np.int64)

    def word(self, index):  # a big-endian 16-bit field
        return (self.at(index) << 8) | self.at(index + 1)


def _link_layer(fields, starts, linktypes):
    """(what each packet's link says follows: an EtherType, -1 when the link is not read;
    where its IP header starts)."""
    word = fields.word
    ethertype, o = word(starts + 12), starts + 14  # Ethernet, then its VLAN tags
    for _ in range(MAX_VLAN_TAGS):
        tagged = np.isin(ethertype, VLAN_ETHERTYPES) & (linktypes == 1)
        if not tagged.any():
            break
        ethertype, o = np.where(tagged, word(o + 2), ethertype), np.where(tagged, o + 4, o)
    first_byte = fields.at(starts)
    raw_ip = np.where(first_byte >> 4 == 4, ETHERTYPE_IPV4, ETHERTYPE_IPV6)
    family = first_byte | fields.at(starts + 3)  # BSD loopback: an address family in 4 bytes of either order
    loopback = np.select([family == 2, np.isin(family, (10, 24, 28, 30))], [ETHERTYPE_IPV4, ETHERTYPE_IPV6], 0)
    links = [linktypes == 1, linktypes == 113, linktypes == 276, np.isin(linktypes, (12, 101, 228, 229)),
             np.isin(linktypes, (0, 108))]  # Ethernet, Linux cooked v1 and v2, raw IP, BSD loopback
    ethertype = np.select(links, [ethertype, word(starts + 14), word(starts), raw_ip, loopback], -1)
    o = np.select(links, [o, starts + 16, starts + 20, starts, starts + 4], starts)
    return ethertype, o


def _ip_layer(fields, ethertype, o, stops):
    """Each packet's IP header: (is IPv4, is IPv6, IPv4's version and IHL byte, where the IP packet
    ends, the transport protocol, where the transport header starts, is a later fragment), past
    IPv6's extension headers."""
    at, word = fields.at, fields.word
    version_ihl = at(o)
    is_ipv4 = (ethertype == ETHERTYPE_IPV4) & (version_ihl >> 4 == 4)
    is_ipv6 = (ethertype == ETHERTYPE_IPV6) & (version_ihl >> 4 == 6)
    ipv4_length = word(o + 2)
    ip_end = np.where(is_ipv4, np.where(ipv4_length > 0, o + ipv4_length, stops),  # 0: left unset by offload
                      o + 40 + word(o + 4))
    protocol = np.where(is_ipv4, at(o + 9), at(o + 6))
    t = np.where(is_ipv4, o + ((version_ihl & 0x0F) << 2), o + 40)
    later_fragment = is_ipv4 & ((word(o + 6) & 0x1FFF) != 0)  # a fragment after the first carries no ports
    for _ in range(MAX_IPV6_EXTENSIONS):
        extension = is_ipv6 & np.isin(protocol, IPV6_EXTENSION_HEADERS)
        fragment = is_ipv6 & (protocol == IPV6_FRAGMENT)
        authentication = is_ipv6 & (protocol == IPV6_AUTHENTICATION)
        later_fragment |= fragment & ((word(t + 2) & 0xFFF8) != 0)
        chained = (extension | fragment | authentication) & ~later_fragment
        if not chained.any():
            break
        step = np.select([extension, fragment], [(at(t + 1) + 1) << 3, 8], (at(t + 1) + 2) << 2)
        protocol, t = np.where(chained, at(t), protocol), np.where(chained, t + step, t)
    return is_ipv4, is_ipv6, version_ihl, ip_end, protocol, t, later_fragment
