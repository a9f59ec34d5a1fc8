"""dmpath: multipath block devices on Linux, on device-mapper or md."""

__version__ = "0.1.0"
