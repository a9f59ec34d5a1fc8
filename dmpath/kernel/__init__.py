"""Kernel interfaces: one module per interface, pure parsers plus thin I/O functions."""
