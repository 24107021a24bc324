"""The API tests' servers, ``llm_server`` and ``light_server``, are session fixtures of
tests/conftest.py, shared with tests/client/."""

from tests.conftest import WAITING_BOUND

__all__ = ["WAITING_BOUND"]  # tests/api/test_gate_e2e.py imports it from here
