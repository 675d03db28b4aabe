"""HOW WE SEARCH AND REPORT: the z3-to-NumPy compiler, the explicit engine, traces,
exports and the command line."""

import time

STARTED = time.perf_counter()  # when the program started: --time-limit counts from here
