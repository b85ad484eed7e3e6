"""Shared fixtures. Torch runs one intra-op thread per test process (pytest-xdist gives the parallelism)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# the tests' example domain (tests/example_domains/tiny) is found like a user's own domain folder
os.environ["SCIFORMER_DOMAIN_PATH"] = os.path.join(os.path.dirname(__file__), "example_domains")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def run_cli(capsys):
    """Run `sciformer ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from core.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
