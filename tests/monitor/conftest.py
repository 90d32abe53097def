"""The provisioner's simulated world, for the monitor checks that need real servers."""

from tests.provisioner.conftest import world  # noqa: F401  (a fixture, registered here)
