"""``python -m dmpath.config``: regenerate or check the man page, print the defaults."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dmpath.config.docs import update_man_page
from dmpath.config.output import config_to_toml
from dmpath.config.records import Config


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] in ("--update-man", "--check-man"):
        page = Path(argv[1])
        old = page.read_text(encoding="utf-8")
        new = update_man_page(old)
        if argv[0] == "--check-man":
            print(f"{page}: {'up to date' if new == old else 'OUT OF DATE'}")
            return 0 if new == old else 1
        page.write_text(new, encoding="utf-8")
        return 0
    if len(argv) == 1 and argv[0] == "--defaults":
        print(config_to_toml(Config()))
        return 0
    print(
        "usage: python -m dmpath.config --update-man|--check-man PAGE | --defaults", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
