"""The real-kernel lab: boots Debian's 6.1 kernel under qemu (TCG) with virtme-ng.

The development machine's kernel has no device-mapper, md or SCSI, so everything that
touches the kernel is proven here. The host side (``provision``, ``vm``) installs what is
missing and boots the VM; the guest side (``guest``, ``topology``) sets up scsi_debug paths
and runs a command inside. ``pytest_plugin`` runs every ``@pytest.mark.lab`` test of a
session inside one boot.
"""
