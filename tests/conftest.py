import sys
from pathlib import Path

# tests/spin.py (callables with known service times) is importable as `spin`,
# in this process and, through PYTHONPATH, in the CLI subprocesses the tests start.
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
