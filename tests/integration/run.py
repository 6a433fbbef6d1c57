#!/usr/bin/env python3
"""Runs every tests/integration/NN_*.py module (or those named on the command line), prints one
line per module and, last, `integration: N passed, M failed`. Exit status 1 on any failure."""

import importlib.util
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv):
    names = argv[1:] or sorted(f for f in os.listdir(HERE) if f[:2].isdigit() and f.endswith(".py"))
    passed = failed = 0
    for name in names:
        path = name if os.path.sep in name else os.path.join(HERE, name)
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        started = time.monotonic()
        try:
            spec.loader.exec_module(mod)
            suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
            result = unittest.TextTestRunner(stream=sys.stdout, verbosity=1).run(suite)
            bad = len(result.failures) + len(result.errors)
            # A skipped test hides a gap: it counts as a failure, never as a pass.
            bad += len(result.skipped)
            ok = result.testsRun - bad
        except Exception as e:  # a module that cannot even load counts as one failure
            print("%s: could not load: %r" % (name, e))
            ok, bad = 0, 1
        passed += ok
        failed += bad
        print("integration %s: %d passed, %d failed (%.1fs)" % (os.path.basename(path), ok, bad,
                                                               time.monotonic() - started))
    print("integration: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
