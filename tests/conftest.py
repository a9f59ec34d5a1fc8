import os
import pathlib

import pytest
from hypothesis import settings

pytest_plugins = ["dmpath.lab.pytest_plugin"]

#: real outputs captured in the lab (copied from the team's shared/fixtures, see README there)
FIXTURES = pathlib.Path(__file__).parent / "fixtures"

if os.environ.get("DMPATH_LAB") == "1":
    # the guest sees the project read-only: keep hypothesis' example database in memory
    settings.register_profile("lab", database=None)
    settings.load_profile("lab")


@pytest.fixture
def shared_fixtures() -> pathlib.Path:
    return FIXTURES
