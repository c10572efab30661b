"""Capture files: finding them, and reading their packets (pcap and pcapng).

A capture is read in blocks of READ_BLOCK_BYTES, so memory does not grow with
the file. Each packet comes out as (timestamp in seconds, link type, bytes as
captured). Both formats are walked here with `struct` rather than through
dpkt's readers: dpkt.pcap.Reader alone delivers about 210,000 packets/s on
this machine, and dpkt's full decode about 34,000, while the session step must
reach 200,000 packets/s per core including its own work (README, "From your
captures"); the tests check every packet against dpkt's readers.
"""
import os
import struct

READ_BLOCK_BYTES = 4 << 20
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")

# pcap: magic in the file's byte order -> (byte order, timestamp fraction unit in seconds)
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
PCAPNG_SECTION_HEADER = b"\x0a\x0d\x0d\x0a"
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_PACKET_BYTES = 1 << 18  # larger than any link's packet (Linux loopback's 64 kB MTU, jumbo frames, TSO)
MAX_BLOCK_BYTES = 1 << 24  # a pcapng block larger than this is damage, not data

# The link layers a session can be taken from (LINKTYPE_* numbers of tcpdump.org).
LINKTYPE_NAMES = {0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 101: "raw IP", 108: "OpenBSD loopback",
                  113: "Linux cooked capture", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked capture v2"}


class CaptureError(ValueError):
    """A capture file cannot be read (from some point on); the message names the file."""


def find_captures(input_dirs):
    """Every capture file (.pcap, .pcapng, .cap) under each folder of input_dirs, recursively.

    Returns {folder: sorted list of paths} in the order of input_dirs; the sort
    makes every later step independent of the file system's listing order.
    Raises CaptureError naming a folder that does not exist or is not a folder.
    """
    found = {}
    for folder in input_dirs:
        if not os.path.isdir(folder):
            reason = "does not exist" if not os.path.exists(folder) else "is not a folder"
            raise CaptureError(f"input_dirs: {folder} {reason}")
        paths = []
        for parent, subfolders, names in os.walk(folder):
            subfolders.sort()
            paths += [os.path.join(parent, name) for name in names if name.lower().endswith(CAPTURE_SUFFIXES)]
        found[folder] = sorted(paths)
    return found


class CaptureReader:
    """The packets of one capture file, read in blocks.

    packets() yields (timestamp_s, linktype, buffer, start, stop): the packet as
    captured is buffer[start:stop] (no copy is made per packet). A file that ends
    inside a packet, or is damaged from some point on, yields the packets before
    that point; the reason is then in .damage (else None), so the caller can
    report it and keep what was read. Raises CaptureError when the file is not a
    capture at all (the message names the file and its first bytes).
    """

    def __init__(self, path):
        self.path = path
        self.damage = None
        self.bytes_read = 0  # how far into the file the packets yielded so far reach

    def packets(self):
        file = open(self.path, "rb")
        head = file.read(4)
        file.seek(0)
        if head in PCAP_MAGICS:  # the generator itself, not one that delegates: a layer costs 5% per packet
            return self._pcap_packets(file)
        if head == PCAPNG_SECTION_HEADER:
            return self._pcapng_packets(file)
        file.close()
        shown = head.hex(" ") if head else "nothing (an empty file)"
        raise CaptureError(f"{self.path}: not a pcap or pcapng capture (it starts with {shown})")

    def _pcap_packets(self, file):
        with file:  # closed when the packets end, or when the caller stops early
            header = file.read(24)
            if len(header) < 24:
                raise CaptureError(f"{self.path}: pcap file header cut short ({len(header)} of 24 bytes)")
            order, fraction_s = PCAP_MAGICS[header[:4]]
            linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF  # high bits: FCS flags
            record_header = struct.Struct(order + "IIII")
            unpack_header = record_header.unpack_from
            position = 24
            buffer, offset = b"", 0
            while True:
                block = file.read(READ_BLOCK_BYTES)
                if not block:
                    break
                buffer = buffer[offset:] + block
                offset, end = 0, len(buffer)
                last_header = end - 16
                while offset <= last_header:
                    seconds, fraction, captured, _ = unpack_header(buffer, offset)
                    start = offset + 16
                    stop = start + captured
                    if captured > MAX_PACKET_BYTES:
                        self.damage = (f"the record at byte {position + offset} claims {captured} bytes: "
                                       f"the file is damaged from there")
                        return
                    if stop > end:
                        break
                    yield seconds + fraction * fraction_s, linktype, buffer, start, stop
                    offset = stop
                position += offset
                self.bytes_read = position
            if len(buffer) > offset:
                self.damage = (f"the last packet is cut short ({len(buffer) - offset} bytes from byte {position}): "
                               f"the capture was truncated")

    def _pcapng_packets(self, file):
        with file:  # closed when the packets end, or when the caller stops early
            order = "<"
            interfaces = []  # per interface of the current section: (linktype, timestamp unit s, offset s, snaplen)
            position = 0
            buffer, offset = b"", 0
            while True:
                block = file.read(READ_BLOCK_BYTES)
                if not block:
                    break
                buffer = buffer[offset:] + block
                offset, end = 0, len(buffer)
                while offset + 12 <= end:
                    block_type = buffer[offset:offset + 4]
                    if block_type == PCAPNG_SECTION_HEADER:  # a section may change the byte order
                        magic = buffer[offset + 8:offset + 12]
                        if magic == b"\x4d\x3c\x2b\x1a":
                            order = "<"
                        elif magic == b"\x1a\x2b\x3c\x4d":
                            order = ">"
                        else:
                            self.damage = f"the section header at byte {position + offset} has no byte-order magic"
                            return
                        interfaces = []
                    block_type_number, block_length = struct.unpack_from(order + "II", buffer, offset)
                    if block_length < 12 or block_length % 4 or block_length > MAX_BLOCK_BYTES:
                        self.damage = (f"the block at byte {position + offset} claims {block_length} bytes: "
                                       f"the file is damaged from there")
                        return
                    if offset + block_length > end:
                        break
                    body = offset + 8
                    if block_type_number == 6:  # enhanced packet block
                        interface, high, low, captured = struct.unpack_from(order + "IIII", buffer, body)
                        packet = self._pcapng_packet(interfaces, interface, (high << 32) | low, position + offset)
                        if packet is None:
                            return
                        yield (*packet, buffer, body + 20, body + 20 + captured)
                    elif block_type_number == 3:  # simple packet block: interface 0, no timestamp
                        original = struct.unpack_from(order + "I", buffer, body)[0]
                        captured = min(original, block_length - 16, interfaces[0][3] if interfaces else original)
                        packet = self._pcapng_packet(interfaces, 0, None, position + offset)
                        if packet is None:
                            return
                        yield (*packet, buffer, body + 4, body + 4 + captured)
                    elif block_type_number == 2:  # obsolete packet block
                        interface, _, high, low, captured = struct.unpack_from(order + "HHIII", buffer, body)
                        packet = self._pcapng_packet(interfaces, interface, (high << 32) | low, position + offset)
                        if packet is None:
                            return
                        yield (*packet, buffer, body + 20, body + 20 + captured)
                    elif block_type_number == 1:  # interface description
                        interfaces.append(_interface(buffer[body:offset + block_length - 4], order))
                    offset += block_length
                position += offset
                self.bytes_read = position
            if len(buffer) > offset:
                self.damage = (f"the last block is cut short ({len(buffer) - offset} bytes from byte {position}): "
                               f"the capture was truncated")

    def _pcapng_packet(self, interfaces, interface, ticks, at):
        """(timestamp_s, linktype) of a packet of `interface`, or None (with .damage) if there is none."""
        if interface >= len(interfaces):
            self.damage = f"the packet at byte {at} names interface {interface}, which the file never described"
            return None
        linktype, unit_s, offset_s, _ = interfaces[interface]
        timestamp = offset_s + ticks * unit_s if ticks is not None else 0.0
        return timestamp, linktype


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
