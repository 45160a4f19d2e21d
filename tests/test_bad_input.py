"""Every user-caused error ends before any work: exit code 2, one line on stderr, no traceback, nothing
written. One battery over the command line (`bench.cli.main`, in this process so the battery stays fast;
tests/test_cli.py and tests/test_sweep.py run the same path as a subprocess).

Each input is (argv, expected fragment of the message, files to create first). In argv, `{tmp}` is the
test's folder; every `run` writes (if it wrongly ran) to `{tmp}/out`, and the whole folder is compared
before and after. Groups: run flags, sweep files, case make, case show, leaderboard, check, parser.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from bench import check
from bench.cli import main

RUN = ["run", "--preset", "smoke", "--attacks", "noise", "--out", "{tmp}/out"]
TUNE = ["tune", "--preset", "smoke", "--attacks", "dlg", "--out", "{tmp}/out", "--trials", "2"]
LONG = "a" * 300  # one path component over NAME_MAX (255)
SWEEP = "name: bad\nattacks: [noise]\nmodels: [lenet]\nimage_size: 16\nbatch_sizes: [2]\n"
TEXT_PTH = {"text.pth": "this is not a checkpoint\n"}
CASE = ["case", "make", "--model", "lenet", "--image-size", "16", "--batch-size", "2"]
NO_TENSORS = st_save({})  # a valid safetensors file holding nothing
RECORD = {"schema": 1, "run_id": "r1", "status": "ok", "config": {"scenario": {}}}


def _sweep_file(text: str, fragment: str) -> tuple[list[str], str, dict[str, str]]:
    return ["run", "--config", "{tmp}/s.yaml", "--out", "{tmp}/out"], fragment, {"s.yaml": text}


def _yaml_case(extra: str, fragment: str, base: str = SWEEP) -> tuple[list[str], str, dict[str, str]]:
    return _sweep_file(base + extra, fragment)


NO_CUDA = not torch.cuda.is_available()
BATTERY: dict[str, tuple[list[str], str, dict[str, str]]] = {
    # --- run: flags ---------------------------------------------------------------------------------
    "device-foo": ([*RUN, "--device", "foo"], "unknown device 'foo'", {}),
    "device-empty": ([*RUN, "--device", ""], "unknown device ''", {}),
    "device-mps": ([*RUN, "--device", "mps"], "not supported", {}),
    "device-cuda-99": ([*RUN, "--device", "cuda:99"], "CUDA device", {}),
    "device-cpu-x": ([*RUN, "--device", "cpu:x"], "unknown device", {}),
    "seeds-negative": ([*RUN, "--seeds", "-1"], "seeds[0]: Input should be greater than or equal to 0", {}),
    "seeds-duplicate": ([*RUN, "--seeds", "0,0"], "seeds: 0 given more than once", {}),
    "seeds-float": ([*RUN, "--seeds", "1.5"], "seeds[0]: Input should be a valid integer (got 1.5)", {}),
    "seeds-text": ([*RUN, "--seeds", "abc"], "seeds[0]: Input should be a valid integer", {}),
    "seeds-empty": ([*RUN, "--seeds", ""], "seeds: Tuple should have at least 1 item", {}),
    "seeds-huge": ([*RUN, "--seeds", str(2**64)], "seeds[0]: Input should be less than", {}),
    "budget-zero": ([*RUN, "--budget", "0"], "budget: Input should be greater than or equal to 1", {}),
    "budget-negative": ([*RUN, "--budget", "-5"], "budget: Input should be greater than or equal to 1", {}),
    "budget-text": ([*RUN, "--budget", "five"], "budget: Input should be a valid integer", {}),
    "budget-float": ([*RUN, "--budget", "2.5"], "budget: Input should be a valid integer", {}),
    "attack-option-type": ([*RUN, "--attack-option", "dlg.lr=fast"], "attack option dlg.lr: Input should be a valid number (got 'fast')", {}),
    "attack-option-field": ([*RUN, "--attack-option", "dlg.lrr=0.5"], "attack 'dlg' has no option 'lrr'; did you mean lr?", {}),
    "attack-option-literal": ([*RUN, "--attack-option", "dlg.init_space=box"], "attack option dlg.init_space: Input should be 'pixel' or 'input' (got 'box')", {}),
    "attack-option-attack": ([*RUN, "--attack-option", "dgl.lr=0.5"], "unknown attack 'dgl'; did you mean dlg", {}),
    "tune-space-field": ([*TUNE, "--space", "dlg.lrr=0.1:1:log"], "search space of 'dlg': its Config has no field 'lrr'", {}),
    "tune-space-kind": ([*TUNE, "--space", "dlg.init_space=0:1"], "init_space is a Literal['pixel', 'input'] field; only int and float fields are tuned", {}),
    "tune-space-range": ([*TUNE, "--space", "dlg.lr=1:0.1"], "a range needs low < high", {}),
    "tune-space-syntax": ([*TUNE, "--space", "dlg.lr=0.1"], "expected a range LOW:HIGH or LOW:HIGH:log, got '0.1'", {}),
    "tune-space-attack": ([*TUNE, "--space", "idlg.lr=0.1:1"], "--space idlg.lr: 'idlg' is not one of the attacks tuned (dlg)", {}),
    "tune-space-variant": ([*TUNE[:4], "gradinversion-no-group", *TUNE[5:], "--space", "gradinversion-no-group.alpha_group=0.01:1"],
                           "alpha_group is fixed by the variant (alpha_group=0.0)", {}),
    "tune-seed-overlap": ([*TUNE, "--seeds", "0,101", "--tune-seeds", "100-102"], "--tune-seeds overlap the sweep's seeds (101)", {}),
    "tune-trials": ([*TUNE[:-1], "0"], "argument --trials: must be at least 1, got 0", {}),
    "tune-seeds-syntax": ([*TUNE, "--tune-seeds", "a-b"], "expected seeds such as 100-104 or 100,101, got 'a-b'", {}),
    "tune-no-space": ([*TUNE[:4], "noise", *TUNE[5:]], "none of noise has a search space to tune", {}),
    "tune-labels": ([*TUNE[:3], *TUNE[5:], "--track", "labels"], "bench tune tunes attacks", {}),
    "run-tuned-missing": ([*RUN, "--tuned", "{tmp}/none.yaml"], "--tuned: {tmp}/none.yaml does not exist", {}),
    "run-tuned-malformed": ([*RUN, "--tuned", "{tmp}/t.yaml"], "is not a tuned-options file written by bench tune", {"t.yaml": "attacks: [1, 2]\n"}),
    "attack-option-no-field": ([*RUN, "--attack-option", "lr=0.5"], "expected NAME.FIELD=VALUE, e.g. dlg.lr=0.5, got 'lr=0.5'", {}),
    "attack-option-no-value": ([*RUN, "--attack-option", "dlg.lr"], "expected NAME.FIELD=VALUE", {}),
    "attack-option-tuple": ([*RUN, "--attack-option", "inverting-gradients.layers=0,1"], "attack option inverting-gradients.layers: Input should be a valid tuple (got '0,1')", {}),
    "attack-option-labels-track": ([*RUN, "--track", "labels", "--attack-option", "dlg.lr=0.5"], "attack_options: for the attacks track only", {}),
    "nproc-zero": ([*RUN, "--nproc", "0"], "--nproc: must be at least 1", {}),
    "nproc-negative": ([*RUN, "--nproc", "-1"], "--nproc: must be at least 1", {}),
    "nproc-text": ([*RUN, "--nproc", "two"], "--nproc: expected an integer", {}),
    "nproc-more-than-batch": ([*RUN, "--nproc", "3"], "cannot be split over 3 ranks", {}),
    "shard-above-negative": ([*RUN, "--shard-above", "-1"], "--shard-above: must be at least 1", {}),
    "shard-above-zero": ([*RUN, "--shard-above", "0"], "--shard-above: must be at least 1", {}),
    "shard-above-one-process": ([*RUN, "--shard-above", "4"], "applies to runs on several ranks", {}),
    "num-classes-zero": ([*RUN, "--num-classes", "0"], "num_classes: Input should be greater than or equal to 2", {}),
    "num-classes-one": ([*RUN, "--num-classes", "1"], "num_classes: Input should be greater than or equal to 2", {}),
    "num-classes-text": ([*RUN, "--num-classes", "ten"], "num_classes: Input should be a valid integer", {}),
    "attacks-empty": ([*RUN, "--attacks", ""], "attacks: Tuple should have at least 1 item", {}),
    "attacks-comma": ([*RUN, "--attacks", ","], "attacks: Tuple should have at least 1 item", {}),
    "attacks-typo": ([*RUN, "--attacks", "nois"], "did you mean noise", {}),
    "attacks-glob-none": ([*RUN, "--attacks", "zzz*"], "no attack matches 'zzz*'", {}),
    "attacks-with-label-track": ([*RUN, "--track", "labels"], "attacks: for the attacks track only", {}),
    "budget-with-label-track": (
        ["run", "--preset", "smoke", "--track", "labels", "--budget", "5", "--out", "{tmp}/out"],
        "budget: for the attacks track only", {},
    ),
    "label-methods-with-attack-track": ([*RUN, "--label-methods", "llg"], "label_methods: for the labels track only", {}),
    "track-unknown": (["run", "--preset", "smoke", "--track", "both", "--out", "{tmp}/out"], "track: Input should be 'attacks' or 'labels'", {}),
    "label-method-unknown": (
        ["run", "--preset", "smoke", "--track", "labels", "--label-methods", "lgg", "--out", "{tmp}/out"],
        "did you mean llg", {},
    ),
    "label-methods-empty": (
        ["run", "--preset", "smoke", "--track", "labels", "--label-methods", "", "--out", "{tmp}/out"],
        "label_methods: Tuple should have at least 1 item", {},
    ),
    "repetition-unmeetable": ([*RUN, "--repetitions", "0.99", "--batch-sizes", "1"], "a batch of 1 can only have r = 0", {}),
    "repetition-rounds-to-none": ([*RUN, "--repetitions", "0.1"], "at B = 2 r can be 0, 0.5", {}),
    "repetition-above-the-highest": (
        [*RUN, "--repetitions", "0.99", "--batch-sizes", "8"], "leaves no label (U = round(0.08) = 0; at most r = 0.875)", {},
    ),
    "batch-beyond-memory": (
        [*RUN, "--batch-sizes", "1000000000", "--repetitions", "0.99999999"], "GiB for its images alone", {},
    ),
    "repetition-one": ([*RUN, "--repetitions", "1.0"], "repetitions[0]: Input should be less than 1", {}),
    "repetition-negative": ([*RUN, "--repetitions", "-0.1"], "repetitions[0]: Input should be greater than or equal to 0", {}),
    "repetition-text": ([*RUN, "--repetitions", "abc"], "repetitions[0]: Input should be a valid number", {}),
    "repetition-nan": ([*RUN, "--repetitions", "nan"], "repetitions[0]", {}),
    "repetition-duplicate": ([*RUN, "--repetitions", "0.5,0.5"], "0.5 given more than once", {}),
    "batch-zero": ([*RUN, "--batch-sizes", "0"], "batch_sizes[0]: Input should be greater than or equal to 1", {}),
    "batch-negative": ([*RUN, "--batch-sizes", "-2"], "batch_sizes[0]", {}),
    "batch-text": ([*RUN, "--batch-sizes", "two"], "batch_sizes[0]: Input should be a valid integer", {}),
    "batch-more-classes-than-data": ([*RUN, "--batch-sizes", "64"], "needs 64 distinct classes", {}),
    "batch-duplicate": ([*RUN, "--batch-sizes", "2,2"], "2 given more than once", {}),
    "image-size-zero": ([*RUN, "--image-size", "0"], "image_size: Input should be greater than or equal to 1", {}),
    "image-size-negative": ([*RUN, "--image-size", "-16"], "image_size", {}),
    "image-size-text": ([*RUN, "--image-size", "big"], "image_size: Input should be a valid integer", {}),
    "image-size-too-small": ([*RUN, "--image-size", "2"], "at least 9 px", {}),
    "model-unknown": ([*RUN, "--models", "nope"], "unknown model 'nope'", {}),
    "model-empty": ([*RUN, "--models", ""], "models: Tuple should have at least 1 item", {}),
    "model-timm-unknown": ([*RUN, "--models", "timm:no_such_model_xyz"], "unknown timm model", {}),
    "dataset-unknown": ([*RUN, "--datasets", "nope"], "unknown dataset 'nope'", {}),
    "dataset-without-path": ([*RUN, "--datasets", "cifar10"], "set --data-path", {}),
    "dataset-missing-path": ([*RUN, "--datasets", "cifar10", "--data-path", "{tmp}/nowhere"], "nowhere", {}),
    "labels-unknown-word": ([*RUN, "--labels", "maybe"], "labels: expected known or unknown, got 'maybe'", {}),
    "labels-empty": ([*RUN, "--labels", ""], "labels_known: Tuple should have at least 1 item", {}),
    "labels-duplicate": ([*RUN, "--labels", "known,known"], "True given more than once", {}),
    "bn-stats-unknown": ([*RUN, "--bn-stats", "foo"], "bn_stats[0]: Input should be 'none', 'running' or 'exact'", {}),
    "bn-stats-empty": ([*RUN, "--bn-stats", ""], "bn_stats: Tuple should have at least 1 item", {}),
    "label-source-unknown": ([*RUN, "--label-source", "foo"], "label_source: Input should be 'dataset' or 'model'", {}),
    "bn-mode-unknown": ([*RUN, "--bn-mode", "foo"], "bn_mode: Input should be 'train' or 'eval'", {}),
    "train-steps-negative": ([*RUN, "--train-steps", "-1"], "train_steps: Input should be greater than or equal to 0", {}),
    "train-steps-float": ([*RUN, "--train-steps", "1.5"], "train_steps: Input should be a valid integer", {}),
    "data-path-empty": ([*RUN, "--data-path", ""], "data_path: String should have at least 1 character", {}),
    "weights-missing": ([*RUN, "--weights", "{tmp}/none.pth"], "weights file {tmp}/none.pth not found", {}),
    "weights-text-file": ([*RUN, "--weights", "{tmp}/text.pth"], "weights file '{tmp}/text.pth'", TEXT_PTH),
    "weights-empty-file": ([*RUN, "--weights", "{tmp}/empty.pth"], "weights file '{tmp}/empty.pth'", {"empty.pth": ""}),
    "weights-unknown-format": ([*RUN, "--weights", "{tmp}/w.npz"], "unknown format", {"w.npz": "x"}),
    "weights-wrong-model": ([*RUN, "--weights", "{tmp}/w.safetensors"], "", {"w.safetensors": "not safetensors"}),
    "lpips-weights-missing": ([*RUN, "--lpips-weights", "{tmp}/none.pth"], "LPIPS backbone weights not found", {}),
    "lpips-weights-text-file": ([*RUN, "--lpips-weights", "{tmp}/text.pth"], "cannot read LPIPS backbone weights", TEXT_PTH),
    "lpips-weights-folder-without-file": ([*RUN, "--lpips-weights", "{tmp}"], "LPIPS backbone weights not found", {}),
    "out-proc": ([*RUN[:-1], "/proc/gibench-x"], "output folder /proc/gibench-x cannot be written", {}),
    "out-name-too-long": ([*RUN[:-1], f"{{tmp}}/{LONG}"], "File name too long", {}),
    "out-is-a-file": ([*RUN[:-1], "{tmp}/file"], "is not a folder", {"file": "keep"}),
    "out-under-a-file": ([*RUN[:-1], "{tmp}/file/runs"], "is not a folder", {"file": "keep"}),
    "out-dev-null": ([*RUN[:-1], "/dev/null"], "is not a folder", {}),
    "config-missing": (["run", "--config", "{tmp}/none.yaml", "--out", "{tmp}/out"], "does not exist", {}),
    "config-is-a-folder": (["run", "--config", "{tmp}", "--out", "{tmp}/out"], "is not a file", {}),
    "config-and-preset": (["run", "--config", "{tmp}/s.yaml", "--preset", "smoke"], "either --config or --preset", {"s.yaml": SWEEP}),
    "preset-unknown": (["run", "--preset", "quik", "--out", "{tmp}/out"], "unknown preset 'quik'", {}),
    "preset-empty": (["run", "--preset", "", "--out", "{tmp}/out"], "unknown preset ''", {}),
    "config-empty": (["run", "--config", "", "--out", "{tmp}/out"], "is not a file", {}),
    "out-empty": ([*RUN[:-1], ""], "--out needs a folder name", {}),
    "case-out-empty": ([*CASE, "--out", " "], "--out needs a folder name", {}),
    "flag-unknown": ([*RUN, "--atacks", "noise"], "unrecognized arguments: --atacks", {}),
    "flag-without-value": ([*RUN, "--budget"], "expected one argument", {}),
    # --- run: sweep files ---------------------------------------------------------------------------
    "yaml-batch-sizes-word": _yaml_case("batch_sizes: two\n", "batch_sizes[0]: Input should be a valid integer", base=""),
    "yaml-repetitions-word": _yaml_case("repetitions: [abc]\n", "repetitions[0]: Input should be a valid number"),
    "yaml-budgets-number": _yaml_case("budgets: 7\n", "budgets: Input should be a valid dictionary"),
    "yaml-budget-word": _yaml_case("budget: five\n", "budget: Input should be a valid integer"),
    "yaml-attack-options-type": _yaml_case("attack_options: {noise: {seconds: 1}}\n", "attack 'noise' has no option 'seconds'; its options: none"),
    "yaml-attack-options-value": _yaml_case("attacks: [dlg]\nattack_options: {dlg: [{lr: 0.5}, {iterations: many}]}\n",
                                            "attack option dlg.iterations: Input should be a valid integer (got 'many')", base=""),
    "yaml-attack-options-not-mapping": _yaml_case("attack_options: {dlg: 0.5}\n", "attack_options['dlg']"),
    "yaml-labels-and-labels-known": _yaml_case("labels: [known]\nlabels_known: [true]\n", "labels and labels_known set the same field"),
    "yaml-image-size-word": _yaml_case("image_size: big\n", "image_size: Input should be a valid integer", base=""),
    "yaml-models-number": _yaml_case("models: 5\n", "models[0]: Input should be a valid string", base=""),
    "yaml-seeds-float": _yaml_case("seeds: 1.5\n", "seeds[0]: Input should be a valid integer (got 1.5)"),
    "yaml-client-memory": _yaml_case("client_memory: medium\n", "client_memory: Input should be 'full' or 'low'"),
    "yaml-infeasible": _yaml_case("infeasible: ignore\n", "infeasible: Input should be 'refuse' or 'skip'"),
    "yaml-track": _yaml_case("track: both\n", "track: Input should be 'attacks' or 'labels'"),
    "yaml-labels-known-word": _yaml_case("labels_known: [maybe]\n", "labels: expected known or unknown, got 'maybe'"),
    "yaml-bn-stats-word": _yaml_case("bn_stats: [foo]\n", "bn_stats[0]"),
    "yaml-model-options-flat": _yaml_case("model_options: {width: 8}\n", "model_options['width']: Input should be a valid dictionary"),
    "yaml-num-classes-negative": _yaml_case("num_classes: -1\n", "num_classes: Input should be greater than or equal to 2"),
    "yaml-data-path-number": _yaml_case("data_path: 5\n", "data_path: Input should be a valid string"),
    "yaml-budgets-negative": _yaml_case("budgets: {noise: -1}\n", "budgets['noise']: Input should be greater than or equal to 1"),
    "yaml-budgets-list-zero": _yaml_case("budgets: {noise: [5, 0]}\n", "budgets['noise']: Input should be greater than or equal to 1"),
    "yaml-budgets-list-empty": _yaml_case("budgets: {noise: []}\n", "budgets['noise']: give one budget or a non-empty list"),
    "yaml-budgets-unknown-attack": _yaml_case("budgets: {nosie: 5}\n", "unknown attack 'nosie'"),
    "yaml-seeds-empty": _yaml_case("seeds: []\n", "seeds: Tuple should have at least 1 item"),
    "yaml-batch-sizes-empty": _yaml_case("batch_sizes: []\n", "batch_sizes: Tuple should have at least 1 item", base=""),
    "yaml-train-steps-negative": _yaml_case("train_steps: -3\n", "train_steps: Input should be greater than or equal to 0"),
    "yaml-label-source": _yaml_case("label_source: foo\n", "label_source: Input should be 'dataset' or 'model'"),
    "yaml-bn-mode": _yaml_case("bn_mode: foo\n", "bn_mode: Input should be 'train' or 'eval'"),
    "yaml-weights-number": _yaml_case("weights: 5\n", "weights: Input should be a valid string"),
    "yaml-image-size-bool": _yaml_case("image_size: true\n", "image_size: Input should be a valid integer (got True)", base=""),
    "yaml-image-size-float": _yaml_case("image_size: 16.0\n", "image_size: Input should be a valid integer (got 16.0)", base=""),
    "yaml-budget-float": _yaml_case("budget: 2.5\n", "budget: Input should be a valid integer"),
    "yaml-seeds-bool": _yaml_case("seeds: [true]\n", "seeds[0]: Input should be a valid integer"),
    "yaml-seeds-duplicate": _yaml_case("seeds: [0, 0]\n", "seeds: 0 given more than once"),
    "yaml-repetition-above-one": _yaml_case("repetitions: [1.5]\n", "repetitions[0]: Input should be less than 1"),
    "yaml-repetition-unmeetable": _yaml_case("repetitions: [0.1]\n", "r can be 0, 0.5"),
    "yaml-name-list": _yaml_case("name: [a]\n", "name: Input should be a valid string"),
    "yaml-attacks-empty": _yaml_case("attacks: []\n", "attacks: Tuple should have at least 1 item", base=""),
    "yaml-model-unknown": _yaml_case("models: [nope]\n", "unknown model 'nope'", base=""),
    "yaml-dataset-unknown": _yaml_case("datasets: [nope]\n", "unknown dataset 'nope'"),
    "yaml-model-option-unknown": _yaml_case(
        "model_options: {lenet: {widht: 8}}\n", "model lenet with options {{'widht': 8}} cannot be built"
    ),
    "yaml-head-init-unknown": _yaml_case("model_options: {lenet: {head_init: bogus}}\n", "head_init must be one of"),
    "yaml-track-labels-with-attacks": _yaml_case("track: labels\n", "attacks: for the attacks track only"),
    "yaml-unknown-field": _yaml_case("atacks: [noise]\n", "unknown sweep field(s) atacks"),
    "yaml-top-level-list": _sweep_file("- a\n- b\n", "a sweep must be a mapping"),
    "yaml-top-level-string": _sweep_file("just words\n", "a sweep must be a mapping"),
    "yaml-malformed": _sweep_file("attacks: [noise\n", "malformed YAML at line"),
    "yaml-tab-indented": _sweep_file("attacks:\n\t- noise\n", "malformed YAML"),
    "yaml-not-text": _sweep_file("\udcff\udcfe", "not a text file"),
    # --- case make ----------------------------------------------------------------------------------
    "case-out-file": ([*CASE, "--out", "{tmp}/file"], "is a file, not a folder", {"file": "keep"}),
    "case-out-user-folder": ([*CASE, "--out", "{tmp}/mine"], "holds files that are not a case's (notes.txt)", {"mine/notes.txt": "keep"}),
    "case-out-dot": ([*CASE, "--out", "."], "is the working folder", {"notes.txt": "keep"}),
    "case-out-parent": ([*CASE, "--out", ".."], "is the working folder (or holds it)", {}),
    "case-out-case-plus-user-file": (
        [*CASE, "--out", "{tmp}/c"], "holds files that are not a case's (notes.txt)", {"c/case.json": "{}", "c/notes.txt": "keep"},
    ),
    "case-batch-zero": ([*CASE, "--batch-size", "0", "--out", "{tmp}/c"], "batch_sizes[0]", {}),
    "case-batch-list": ([*CASE, "--batch-size", "4,5", "--out", "{tmp}/c"], "batch_sizes[0]: Input should be a valid integer (got '4,5')", {}),
    "case-repetition-one": ([*CASE, "--repetition", "1", "--out", "{tmp}/c"], "repetitions[0]: Input should be less than 1", {}),
    "case-repetition-unmeetable": ([*CASE, "--batch-size", "1", "--repetition", "0.5", "--out", "{tmp}/c"], "batch of 1", {}),
    "case-model-unknown": ([*CASE, "--model", "nope", "--out", "{tmp}/c"], "unknown model 'nope'", {}),
    "case-seed-negative": ([*CASE, "--seed", "-1", "--out", "{tmp}/c"], "seeds[0]", {}),
    "case-image-size-zero": ([*CASE, "--image-size", "0", "--out", "{tmp}/c"], "image_size", {}),
    "case-num-classes-zero": ([*CASE, "--num-classes", "0", "--out", "{tmp}/c"], "num_classes", {}),
    "case-weights-text-file": ([*CASE, "--weights", "{tmp}/text.pth", "--out", "{tmp}/c"], "weights file", TEXT_PTH),
    "case-bn-stats-unknown": ([*CASE, "--bn-stats", "foo", "--out", "{tmp}/c"], "bn_stats[0]", {}),
    "case-label-source-unknown": ([*CASE, "--label-source", "foo", "--out", "{tmp}/c"], "label_source", {}),
    "case-dataset-missing-path": ([*CASE, "--dataset", "cifar10", "--data-path", "{tmp}/no", "--out", "{tmp}/c"], "no", {}),
    "case-out-name-too-long": ([*CASE, "--out", f"{{tmp}}/{LONG}"], "File name too long", {}),
    "case-out-proc": ([*CASE, "--out", "/proc/gibench-case"], "cannot be written", {}),
    "case-out-missing": (CASE, "the following arguments are required: --out", {}),
    # --- case show ----------------------------------------------------------------------------------
    "show-missing": (["case", "show", "{tmp}/none"], "missing file", {}),
    "show-a-file": (["case", "show", "{tmp}/file"], "missing file", {"file": "x"}),
    "show-json-list": (["case", "show", "{tmp}/c"], "holds a JSON list", {"c/case.json": "[1, 2]", "c/case.safetensors": ""}),
    "show-json-empty-object": (["case", "show", "{tmp}/c"], "has schema None", {"c/case.json": "{}", "c/case.safetensors": ""}),
    "show-json-broken": (["case", "show", "{tmp}/c"], "is not valid JSON", {"c/case.json": "{not", "c/case.safetensors": ""}),
    "show-json-empty": (["case", "show", "{tmp}/c"], "is not valid JSON", {"c/case.json": "", "c/case.safetensors": ""}),
    "show-no-tensors": (["case", "show", "{tmp}/c"], "missing file", {"c/case.json": '{"schema": 1}'}),
    "show-checksum": (
        ["case", "show", "{tmp}/c"], "does not match the checksum", {"c/case.json": '{"schema": 1}', "c/case.safetensors": "x"},
    ),
    "show-inconsistent": (
        ["case", "show", "{tmp}/c"],
        "case file is inconsistent",
        {"c/case.json": json.dumps({"schema": 1, "tensors_sha256": hashlib.sha256(NO_TENSORS).hexdigest()}),
         "c/case.safetensors": NO_TENSORS},
    ),  # fmt: skip
    "show-garbage-bytes": (["case", "show", "{tmp}/c"], "is not valid JSON", {"c/case.json": "\udcff\udcfe", "c/case.safetensors": ""}),
    # --- leaderboard --------------------------------------------------------------------------------
    "board-runs-missing": (["leaderboard", "--runs", "{tmp}/none"], "does not exist", {}),
    "board-runs-empty": (["leaderboard", "--runs", "{tmp}/runs"], "no records", {"runs/case.json": "{}"}),
    "board-only-broken-records": (
        ["leaderboard", "--runs", "{tmp}/runs"], "no records (*.json) under {tmp}/runs; 2 file(s) skipped",
        {"runs/a.json": "[1]", "runs/b.json": "{trunc"},
    ),
    "board-format": (["leaderboard", "--runs", "{tmp}", "--format", "pdf"], "invalid choice: 'pdf'", {}),
    "board-columns": (["leaderboard", "--runs", "{tmp}", "--columns", "seed"], "invalid choice: 'seed'", {}),
    "board-metric-unknown": (["leaderboard", "--runs", "{records}", "--metrics", "psnrr"], "did you mean psnr", {}),
    "board-out-under-file": (["leaderboard", "--runs", "{records}", "--out", "{tmp}/file/board.md"], "cannot write", {"file": "x"}),
    "board-out-too-long": (["leaderboard", "--runs", "{records}", "--out", f"{{tmp}}/{LONG}.md"], "cannot write", {}),
    "board-plots-under-file": (["leaderboard", "--runs", "{records}", "--plots", "{tmp}/file/p"], "cannot write plots", {"file": "x"}),
    "board-run-recorded-twice": (["leaderboard", "--runs", "{tmp}/runs"], "recorded twice", {"runs/a/r.json": "R", "runs/b/r.json": "R"}),
    # --- check --------------------------------------------------------------------------------------
    "check-reference-truncated": (["check"], "is not valid JSON", {"reference.json": '{"entries": {"a": {"st'}),
    "check-reference-empty": (["check"], "is not valid JSON", {"reference.json": ""}),
    "check-reference-list": (["check"], "is not a reference file", {"reference.json": "[]"}),
    "check-reference-entries-list": (["check"], "is not a reference file", {"reference.json": '{"entries": []}'}),
    "check-reference-entry-without-metrics": (["check"], "is not a reference file", {"reference.json": '{"entries": {"a": {"status": "ok"}}}'}),
    "check-reference-missing": (["check"], "no reference values at", {}),
    "check-only-unknown": (["check", "--only", "nois"], "--only nois: not in the check suite", {"reference.json": "{}"}),
    "check-reference-old-schema": (["check"], "has reference schema None, expected 2", {"reference.json": '{"entries": {}}'}),
    "check-suite-without-reference": (["check", "--suite", "{tmp}/s.yaml"], "--suite needs --reference", {"s.yaml": "attacks: [noise]\n"}),
    "check-suite-missing": (["check", "--suite", "{tmp}/none.yaml", "--reference", "{tmp}/r.json"], "suite {tmp}/none.yaml does not exist", {}),
    "check-suite-empty-folder": (["check", "--suite", "{tmp}/d", "--reference", "{tmp}/r.json"], "holds no sweep file", {"d/notes.txt": "x"}),
    "check-suite-bad-sweep": (["check", "--suite", "{tmp}/s.yaml", "--reference", "{tmp}/r.json"], "unknown attack 'nois'", {"s.yaml": "attacks: [nois]\n"}),
    "check-imitate-without-update": (["check", "--imitate", "avx2"], "give it with --update", {}),
    "check-imitate-unknown": (["check", "--update", "--imitate", "avx3"], "--imitate avx3: unknown kernel setting", {}),
    "check-update-budget-scale": (["check", "--update", "--budget-scale", "0.5"], "no --budget-scale", {}),
    "check-junit-with-update": (["check", "--update", "--junit", "{tmp}/j.xml"], "--junit writes verdicts", {}),
    "check-junit-folder": (["check", "--junit", "{tmp}/d"], "--junit {tmp}/d is a folder", {"d/x": "x", "reference.json": "{}"}),
    "check-budget-scale-zero": (["check", "--budget-scale", "0"], "must be a positive number", {}),
    "check-budget-scale-negative": (["check", "--budget-scale", "-1"], "must be a positive number", {}),
    "check-budget-scale-text": (["check", "--budget-scale", "abc"], "expected a number", {}),
    "check-budget-scale-inf": (["check", "--budget-scale", "inf"], "must be a positive number", {}),
    # --- the parser ---------------------------------------------------------------------------------
    "no-command": ([], "the following arguments are required: command", {}),
    "unknown-command": (["train"], "invalid choice: 'train'", {}),
    "ls-unknown": (["ls", "weights"], "invalid choice: 'weights'", {}),
    "case-no-subcommand": (["case"], "the following arguments are required: case_command", {}),
}
ENVIRONMENT = {
    "lpips-env-missing": ({"BENCH_LPIPS_WEIGHTS": "{tmp}/none.pth"}, RUN, "from BENCH_LPIPS_WEIGHTS"),
    "plugin-missing": ({"GIBENCH_PLUGINS": "no_such_plugin"}, RUN,
                       "plugin no_such_plugin (GIBENCH_PLUGINS) failed to load: ModuleNotFoundError: No module named 'no_such_plugin'"),
    "cache-unwritable": ({"BENCH_CACHE": "/proc/gibench-cache"}, [*RUN, "--train-steps", "2"], "/proc/gibench-cache cannot be written"),
}
if NO_CUDA:
    BATTERY["device-cuda-absent"] = ([*RUN, "--device", "cuda"], "no CUDA device", {})
    BATTERY["nproc-cuda-absent"] = ([*RUN, "--nproc", "2", "--device", "cuda"], "no CUDA device", {})
RECORDS = Path(__file__).resolve().parents[1] / "leaderboard" / "records" / "calibration" / "lenet-embedded-16"


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _refused(argv: list[str], tmp: Path, capsys) -> str:
    """Run the command; check exit 2, one error line, no traceback, the folder unchanged; return the line."""
    before = _snapshot(tmp)
    with warnings.catch_warnings(record=True) as notes:  # a notice would be a second line on stderr
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse ends this way
            code = stop.code
    err = capsys.readouterr().err + "".join(f"note: {n.message}\n" for n in notes)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _snapshot(tmp) == before
    return lines[0]


def _prepare(tmp: Path, files: dict[str, str | bytes]) -> None:
    record = json.dumps({**RECORD, "run_id": "same"})
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif "\udcff" in text:
            path.write_bytes(b"\xff\xfe")
        else:
            path.write_text(record if text == "R" else text)


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_bad_input_is_refused_with_one_line(name: str, tmp_path: Path, capsys, monkeypatch):
    argv, fragment, files = BATTERY[name]
    tmp = tmp_path / "t"
    tmp.mkdir()
    _prepare(tmp, files)
    monkeypatch.setattr(check, "REFERENCE", tmp / "reference.json")
    work_done = ("bench.check.run_cells", "bench.commands.run_cells", "bench.commands.simulate", "bench.commands.spawn_local",
                 "bench.tune.run_cells", "bench.tune.simulate")
    for work in work_done:
        monkeypatch.setattr(work, _must_not_run)  # refused before any work, or the test fails at once
    monkeypatch.chdir(tmp)  # `--out .` and relative paths land here, never in the repository
    fill = {"tmp": str(tmp), "records": str(RECORDS)}
    line = _refused([a.format(**fill) for a in argv], tmp, capsys)
    assert fragment.format(**fill) in line


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_bad_environment_is_refused_with_one_line(name: str, tmp_path: Path, capsys, monkeypatch):
    env, argv, fragment = ENVIRONMENT[name]
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setattr("bench.commands.run_cells", _must_not_run)
    assert fragment in _refused([a.format(tmp=tmp_path) for a in argv], tmp_path, capsys)


def _must_not_run(*args, **kwargs):
    raise AssertionError("work started before the input was refused")


# ---- errors in the middle of a run: the disk fills, the file system turns read-only ----------------------


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_write_failure_mid_run_names_the_file_and_resume(code, words, tmp_path: Path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = ["run", "--preset", "smoke", "--attacks", "noise", "--seeds", "0,1,2", "--no-images", "--out", str(out)]
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the second record: the first is already complete on disk
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr("bench.files.os.fsync", failing_fsync)
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "--resume" in lines[0]
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 1 and written[0].endswith(".json")  # one whole record, no temporary file
    json.loads((out / written[0]).read_text())
    assert lines[0].startswith(f"error: cannot write {out}/") and written[0] not in lines[0]
    monkeypatch.setattr("bench.files.os.fsync", real_fsync)
    assert main([*argv, "--resume"]) == 0
    assert len(list(out.glob("*.json"))) == 3


def test_skipped_record_files_are_named_and_counted(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for record in RECORDS.glob("*.json"):
        (runs / record.name).write_bytes(record.read_bytes())
    broken = {"list.json": "[1, 2]", "noconfig.json": json.dumps({k: v for k, v in RECORD.items() if k != "config"}),
              "extra.json": json.dumps({**RECORD, "colour": "red"}), "cut.json": '{"schema": 1, "run',
              "word.json": json.dumps({**RECORD, "run_id": "w1", "metrics": {"psnr": "high", "ssim": 0.5}})}  # fmt: skip
    for name, text in broken.items():
        (runs / name).write_text(text)
    done = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--runs", str(runs)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = done.stderr.strip().splitlines()
    assert len(notes) == 5 and all(line.startswith("note: skipped") for line in notes), notes
    for name, why in [("list.json", "holds a JSON list"), ("noconfig.json", "lacks config"),
                      ("extra.json", "unknown key(s) colour"), ("cut.json", "cannot read record"),
                      ("word.json", "metric(s) that are not numbers: psnr='high'")]:  # fmt: skip
        assert any(name in line and why in line for line in notes)
    footer = done.stdout.strip().splitlines()[-1]
    assert footer.startswith(f"5 file(s) under {runs} skipped, not records:") and "list.json" in footer
