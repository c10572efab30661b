"""The HW-NAS toolkit's package: a folder per concern (README's map). The scripts B01_NAS.py and
B00_pcap_to_idx.py and the design's library_*.py files at the project's root use it."""
import os

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project folder: data/, logs/
