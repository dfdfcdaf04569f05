"""``mutmut run`` for a checkout whose mutants are all made and current, without measuring coverage again.

mutmut (``mutate_only_covered_lines``) runs the whole fast tier under
coverage at the start of every run, about 9 minutes here, though it reads the
covered lines only to make a module's mutants. ``tools.mutation`` runs mutmut
through this entry point only when every mutated module's copy in
``mutants/`` is newer than its source (``mutants_made``), so mutmut makes no
mutants and the measurement would be thrown away: the second pass of every
run, and any run after one with no source change. Its effect is the pinned
mutmut's own ``store_lines_covered_by_tests`` left out.
"""

import sys

import mutmut.__main__ as mutmut_main

if __name__ == "__main__":
    mutmut_main.store_lines_covered_by_tests = lambda: None
    sys.exit(mutmut_main.cli())
