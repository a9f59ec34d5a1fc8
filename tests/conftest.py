import os

from hypothesis import settings

pytest_plugins = ["dmpath.lab.pytest_plugin"]

if os.environ.get("DMPATH_LAB") == "1":
    # the guest sees the project read-only: keep hypothesis' example database in memory
    settings.register_profile("lab", database=None)
    settings.load_profile("lab")
