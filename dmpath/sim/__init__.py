"""A simulated SAN and device-mapper for driving the real daemon engine at scales the lab
cannot boot (16,384 paths): ``kernel`` holds the simulation, ``run`` the scenarios that
``python -m dmpath.lab bench --simulate`` reports."""
