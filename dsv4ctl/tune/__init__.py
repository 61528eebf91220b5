"""`dsv4ctl tune` and `dsv4ctl propose`: search the declared tunables of a plan under its rules and an
SLO, keep every candidate's evidence in a tune directory, and file the winner back as a tuned overlay.

Modules, lowest first: tunables (the declared knobs) → plans (the one path to a checked plan) →
space (coupled candidates) → objective (SLO, scores) → measure (one candidate's load points) →
engines (start/stop a server) → tunedir (on-disk state, resume) → search (the loop) → final
(baseline vs winner repeats, accuracy gate) → report → guard (overlay guardrails) → propose."""
