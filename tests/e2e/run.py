"""Runs the end-to-end tests and ends with the line `N passed, M failed`.

    python tests/e2e/run.py [effect|compute|reducer|orchestrator ...]

Exit status 0 only when every test passed (and at least one ran).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_nodes  # noqa: E402


def main(argv):
    kinds = argv or list(test_nodes.KINDS)
    unknown = [k for k in kinds if k not in test_nodes.KINDS]
    if unknown:
        print(f"unknown kind(s): {', '.join(unknown)}; known: {', '.join(test_nodes.KINDS)}")
        print("0 passed, 1 failed")
        return 2
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(test_nodes.KINDS[k]) for k in kinds)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
