"""`bench audit`: does a federated deployment leak? The benchmark's attacks and label methods run on the
user's own model (a class in their Python file) and their own images (a folder per class), at their batch
sizes, update and defenses, within the time they allow; the answer is a static report.

Modules, in the order the command uses them: `options` (the flags), `target` (the model and data, checked),
`calibrate` (a short timed run of every attack), `plan` (budgets fitted to the time allowed), the runner of
the benchmark (bench.runner), `findings` and `verdict` (what leaks, in numbers and in words), `report` and
`folder` (the report, written whole). `command` ties them together.
"""
