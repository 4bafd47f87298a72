"""The arbiter rig (``rig_factory``, defined with its helpers in test_arbiter.py) for every test here."""

from tests.daemon.gpu.test_arbiter import rig_factory  # noqa: F401 - re-exported as a fixture
