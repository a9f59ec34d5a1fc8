"""``mpathctl``, the administrator's view of and hands on dmpath's maps.

:mod:`~dmpath.cli.main` parses arguments and talks to the daemon; the views are pure
(:mod:`~dmpath.cli.render`, :mod:`~dmpath.cli.mptjson`) so they can be tested without one;
:mod:`~dmpath.cli.kernelview` reads the kernel when no daemon runs.
"""

#: printed (on stderr under --json) when the views come from the kernel because no
#: daemon answers
KERNEL_NOTICE = "dmpathd is not running: showing the kernel's view (no checker states)"
