"""HOW WE SEARCH AND REPORT: the z3-to-NumPy compiler, the explicit engine, traces,
exports and the command line."""
