"""What every gate records: the custom properties its output artifact carries.

A gate (the data gate before training, the serving gate before pushing, the check that a
candidate is new) writes these on the artifact it outputs; the run summary, `colorize
lineage` and the model card read them from ML Metadata, never from the gate's module.
"""
PASSED = "gate_passed"      # int: 1 passed, 0 stopped the run (or the push)
VERDICT = "gate_verdict"    # one line: what was checked and, when it stopped, which values failed
REPORT = "gate_report"      # the full report (a file inside the artifact), for the reader who wants more
