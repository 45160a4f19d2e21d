"""Command line: `python -m bench run|tune|ls|case|leaderboard|claims|audit|check ...` (the `bench` console script is the same)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from typing import NoReturn

from bench import __version__
from bench.defaults import DEFAULT_PRESET, DEFAULT_SCENARIO
from bench.errors import BenchError
from bench.heartbeat import follow_launcher
from bench.listing import LISTS


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit code 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _scalar(text: str) -> int | float | str:
    """An integer or a number when the text is one; else the text, for the sweep's typed check to judge."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _values(text: str) -> list:
    return [_scalar(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _defenses(text: str) -> list[str]:
    """Defenses separated by the commas outside parentheses: "none,dp(clip=1, sigma=0.5),prune(0.9)"."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def _attack_option(text: str) -> tuple[str, str, object]:
    """NAME.FIELD=VALUE -> (attack, field, value); the value is read as JSON (numbers, true, false, null,
    [lists]) and is text otherwise, for the attack's Config to judge."""
    key, equals, value = text.partition("=")
    name, dot, option = key.strip().rpartition(".")
    if not equals or not dot or not name or not option:
        raise argparse.ArgumentTypeError(f"expected NAME.FIELD=VALUE, e.g. dlg.lr=0.5, got {text!r}")
    try:
        return name, option, json.loads(value)
    except ValueError:
        return name, option, value


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_scenario_flags(parser: argparse.ArgumentParser, many: bool) -> None:
    """Flags shared by `run` (axes: comma-separated lists) and `case make` (one value each).

    Every flag's destination is the Sweep field it sets (an axis gets a list either way), and values are
    left as typed as the text says: the Sweep checks them, the same way it checks a YAML file.
    """

    def axis(each, one):
        return each if many else (lambda text: [one(text)])

    def flag(name: str) -> str:
        return f"--{name}s" if many else f"--{name}"

    default = {k: f"(default: {v:g})" if isinstance(v, float) else f"(default: {v})" for k, v in DEFAULT_SCENARIO.items()}
    parser.add_argument(flag("model"), dest="models", type=axis(_names, str), help=f"model name(s), e.g. lenet, convnet, resnet18, timm:<name> {default['model']}")
    parser.add_argument(flag("dataset"), dest="datasets", type=axis(_names, str), help=f"dataset name(s) {default['dataset']}")
    parser.add_argument("--data-path", help="local copy of the dataset (ImageNet folder, CIFAR binary folder, ...)")
    parser.add_argument("--image-size", type=_scalar, help=f"square image size in pixels {default['image_size']}")
    parser.add_argument(flag("batch-size"), dest="batch_sizes", type=axis(_values, _scalar), help=f"images per client {default['batch_size']}")
    parser.add_argument(flag("repetition"), dest="repetitions", type=axis(_values, _scalar), help=f"label repetition rate r = 1 - U/B {default['repetition']}")
    parser.add_argument("--label-source", help="dataset (default), or model: labels drawn from the model's classes independently of image content")
    parser.add_argument("--num-classes", type=_scalar, help="classes of the model's head (default: the dataset's)")
    parser.add_argument("--weights", help="local pretrained checkpoint (torchvision/timm state dict or MoCo v2)")
    parser.add_argument("--train-steps", type=_scalar, help="seeded SGD steps on the dataset before the leaked round")
    parser.add_argument("--bn-mode", help="client's BN mode: train (default) or eval")
    parser.add_argument("--bn-stats", dest="bn_stats", type=axis(_names, str), help=f"threat model BN statistics: none, running, exact {default['bn_stats']}")
    parser.add_argument(flag("defense"), dest="defenses", type=axis(_defenses, str), help="client defense(s), e.g. none, 'dp(clip=1, sigma=0.5)', 'prune(0.9)' (bench ls defenses)")
    parser.add_argument("--local-steps", dest="local_steps", type=axis(_values, _scalar), help="local SGD steps per client: 1 = FedSGD (default), n > 1 = FedAvg")
    parser.add_argument("--clients", dest="clients", type=axis(_values, _scalar), help="clients whose updates are averaged (default 1)")
    parser.add_argument("--local-batch-size", type=_scalar, help="FedAvg minibatch (default: the client's whole batch)")
    parser.add_argument("--local-lr", type=_scalar, help="FedAvg learning rate (default 1e-4)")
    if many:
        parser.add_argument("--labels", dest="labels_known", type=_names, help=f"threat model labels: known, unknown (comma list) {default['labels']}")
        parser.add_argument("--seeds", type=_values, help=f"seeds of the client's batch (and model) {default['seed']}")
    else:
        parser.add_argument("--labels-known", dest="labels_known", action="store_const", const=[True], help="the attacker is given the labels (default: unknown)")
        parser.add_argument("--seed", dest="seeds", type=axis(_values, _scalar), help=f"seed of the client's batch (and model) {default['seed']}")


def _seed_list(text: str) -> list[int]:
    """'100-104' or '100,101,103' as a list of seeds."""
    seeds: list[int] = []
    try:
        for part in (p for p in text.split(",") if p):
            low, dash, high = part.partition("-")
            seeds += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 100-104 or 100,101, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected one or more seeds >= 0, got {text!r}")
    return sorted(set(seeds))


def _space(text: str) -> tuple[str, str, object]:
    """NAME.FIELD=LOW:HIGH[:log] -> (attack, field, range)."""
    from bench.search_space import parse_range

    key, equals, value = text.partition("=")
    name, dot, option = key.strip().rpartition(".")
    if not equals or not dot or not name or not option:
        raise argparse.ArgumentTypeError(f"expected NAME.FIELD=LOW:HIGH[:log], e.g. dlg.lr=0.01:10:log, got {text!r}")
    try:
        return name, option, parse_range(value)
    except BenchError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that say what a sweep runs: shared by `run` and `tune`."""
    parser.add_argument("--attacks", type=_names, help="attack names or globs, comma-separated; 'all' for every attack")
    parser.add_argument("--track", help="attacks (default), or labels: label-recovery methods only (one gradient, no optimisation)")
    parser.add_argument("--label-methods", type=_names, help="label-recovery methods for --track labels ('all' for every method)")
    parser.add_argument("--preset", help=f"shipped sweep: smoke, quick, paper (default: {DEFAULT_PRESET}; bench ls presets)")
    parser.add_argument("--config", help="YAML sweep file (fields of bench.sweep.Sweep)")
    parser.add_argument("--budget", type=_scalar, help="iterations per attack (default: the preset's)")
    parser.add_argument("--flops", dest="compute", type=_scalar, help="FLOPs per attack run, the same for every attack (replaces iteration budgets), e.g. 1e10")
    parser.add_argument("--attack-option", dest="attack_option", action="append", type=_attack_option, metavar="NAME.FIELD=VALUE",
                        help="set a field of an attack's Config, e.g. dlg.lr=0.5 (repeatable; values as JSON: 1e-3, true, null, [0, 1])")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under a launch, cuda means cuda:LOCAL_RANK)")
    parser.add_argument("--lpips-weights", help="AlexNet ImageNet weights for LPIPS (else looked up in torch's cache)")
    add_scenario_flags(parser, many=True)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="bench", description="Gradient inversion benchmark")
    parser.add_argument("--version", action="version", version=f"gibench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run a sweep of attacks and score them",
        description=f"Run a preset ({DEFAULT_PRESET} unless --preset or --config), the flags given replacing its values. "
        "Presets and sweep files start from the default scenario that the defaults below name; the effective settings "
        "are printed before any work. Records go to runs/<preset>, or, when flags change the preset, to "
        "runs/<preset>+<what the flags change> (--out chooses another folder).",
    )  # fmt: skip
    add_sweep_flags(run)
    run.add_argument("--resume", action="store_true", help="skip runs already recorded as ok in the output folder")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed run and print its traceback")
    run.add_argument("--no-images", action="store_true", help="do not write the PNG grid of each run")
    run.add_argument("--per-run", action="store_true", help="end with one row per run instead of the comparison over seeds")
    run.add_argument("--tuned", help="tuned.yaml written by bench tune: each attack runs with its tuned options on the settings it was tuned for (case seeds must differ from the tuning seeds)")
    run.add_argument("--out", default=None, help="folder for records (default: runs/<preset>, runs/<preset>+<changes> when flags change it)")
    run.add_argument("--nproc", type=_at_least(1), default=1, help="local ranks to spawn (gloo on CPU, nccl on CUDA); under torchrun the launcher's ranks are used")
    run.add_argument("--shard-above", type=_at_least(1), help="with several ranks: batches up to this size run one per rank, larger ones are sharded over all ranks (default: shard every batch)")

    tune = sub.add_parser(
        "tune", help="tune every attack with the same number of trials (Optuna) on cases apart from the scoring ones",
        description="One Optuna study (seeded TPE) per attack and setting of the sweep that `bench run` would run with "
        "the same flags: each trial runs the attack with options drawn from its search space on the sweep's cells at "
        "the tuning seeds (--tune-seeds, which must differ from the sweep's seeds); the objective is the mean "
        "psnr_gain. Studies are stored in OUT/study.db (a killed call resumes; a larger --trials continues) and the "
        "best options in OUT/tuned.yaml, for `bench run --tuned`.",
    )  # fmt: skip
    add_sweep_flags(tune)
    tune.add_argument("--trials", type=_at_least(1), required=True, help="trials per attack and setting (counted trials: completed, or failed by a run)")
    tune.add_argument("--tune-seeds", type=_seed_list, default=[100, 101, 102, 103, 104], help="case seeds the studies run on, e.g. 100-104 or 100,101 (default 100-104)")
    tune.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    tune.add_argument("--space", action="append", type=_space, metavar="NAME.FIELD=LOW:HIGH[:log]",
                      help="set or add a range of an attack's search space, e.g. dlg.lr=0.01:10:log (repeatable)")
    tune.add_argument("--out", required=True, help="folder for study.db, tuned.yaml and the trials' records (runs/)")

    ls = sub.add_parser("ls", help="list registered names")
    ls.add_argument("what", choices=LISTS)

    case = sub.add_parser("case", help="make or inspect a leaked-update case")
    case_sub = case.add_subparsers(dest="case_command", required=True)
    make = case_sub.add_parser("make", help="simulate a client and write its Case (and Secret) files")
    make.add_argument("--out", required=True, help="folder to write case.json/.safetensors and secret.*")
    make.add_argument("--no-secret", action="store_true", help="write only the attacker's files")
    add_scenario_flags(make, many=False)
    show = case_sub.add_parser("show", help="print a case's summary")
    show.add_argument("folder")

    board = sub.add_parser("leaderboard", help="render tables (and plots) from a folder of records")
    board.add_argument("--runs", required=True, nargs="+", metavar="DIR", help="folder(s) of records, subfolders included (tables: all together; --site: one page each)")
    board.add_argument("--format", default="md", choices=("md", "latex", "csv", "html"))
    board.add_argument("--out", help="file, or folder for leaderboard.<ext>, to write (default: stdout)")
    board.add_argument("--plots", help="folder for PNG plots (with index.md) and per-attack image grids")
    board.add_argument("--site", help="folder for a static site: an index and one page per runs folder")
    board.add_argument("--metrics", type=_names, help="metrics of the attack tables, comma-separated (default psnr)")
    board.add_argument("--columns", choices=("batch_size", "repetition"), help="column axis of the attack tables (default batch_size)")
    board.add_argument("--at-flops", type=_positive_number, help="read each run at this compute: its best reconstruction within that many FLOPs (from its trace)")
    board.add_argument("--tuned", help="tuned.yaml of bench tune: render instead the default-against-tuned table of its attacks (Markdown), from the runs folders' records of both")
    board.add_argument("--target-gain", type=float, default=10.0, help="gain over the prior floor (dB) of the time-to-target table (default 10)")

    claims = sub.add_parser("claims", help="render the paper-claims table from the published records")
    claims.add_argument("--board", default="leaderboard", help="folder holding records/ (default: leaderboard)")
    claims.add_argument("--out", help="file to write (default: stdout)")

    audit = sub.add_parser("audit", help="does my federated deployment leak? attack your own model on your own images")
    audit.add_argument("--model", required=True, help="your model: path/to/file.py:ClassName (an nn.Module subclass)")
    audit.add_argument("--model-args", default="{}", help="JSON object of the class's keyword arguments, e.g. '{\"num_classes\": 10}'")
    audit.add_argument("--weights", help="your model's weights: .safetensors or a PyTorch state dict (read with weights_only)")
    audit.add_argument("--data", required=True, help="folder of your images, one sub-folder per class (.png, .jpg)")
    audit.add_argument("--normalization", default="data", help="data (the images' own mean and std, default), imagenet, or <mean>/<std> per channel, e.g. 0.5,0.5,0.5/0.25,0.25,0.25")
    audit.add_argument("--image-size", type=_at_least(1), default=32, help="square size the images are served at (default 32)")
    audit.add_argument("--batch-sizes", type=_values, default=[1, 8, 32], help="client batch sizes to audit (default 1,8,32)")
    audit.add_argument("--cases", type=_at_least(2), default=5, help="client batches per batch size (seeds; default 5): the evidence of every verdict")
    audit.add_argument("--local-steps", type=_at_least(1), default=1, help="local SGD steps per update: 1 = FedSGD (default), n > 1 = FedAvg")
    audit.add_argument("--local-batch-size", type=_at_least(1), help="FedAvg minibatch (default: the client's whole batch)")
    audit.add_argument("--local-lr", type=_positive_number, default=1e-4, help="FedAvg learning rate (default 1e-4)")
    audit.add_argument("--defenses", type=_defenses, default=[], help="defenses to compare with none, e.g. 'dp(clip=1, sigma=0.5),prune(0.9)' (bench ls defenses)")
    audit.add_argument("--labels", choices=("unknown", "known"), default="unknown", help="does the server know the labels? (default unknown)")
    audit.add_argument("--bn-stats", choices=("auto", "none", "running", "exact"), default="auto", help="BN statistics the server has (auto: running with BN layers, else none)")
    audit.add_argument("--bn-mode", choices=("train", "eval"), default="train", help="the client's BN mode (default train; DP-SGD needs eval)")
    audit.add_argument("--attacks", type=_names, help="attacks to try (default: dlg, idlg, inverting-gradients, gradinversion, e2egi-no-mlco, e2egi)")
    audit.add_argument("--max-minutes", type=_positive_number, default=20.0, help="wall time the whole audit may take (default 20)")
    audit.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    audit.add_argument("--out", required=True, help="folder for the report (index.html, report.json, records/); written when complete")

    check = sub.add_parser("check", help="regression gate: a suite over seeds against reference distributions")
    check.add_argument("--suite", help="sweep file, or folder of them, to gate (default: the shipped suite, bench/presets/check)")
    check.add_argument("--reference", help="reference file (default: the shipped suite's; required with --suite)")
    check.add_argument("--update", action="store_true", help="rewrite the reference from the current code, measuring the minimum effects under imitated kernels")
    check.add_argument("--imitate", type=_names, help="with --update: kernel settings to measure under (default: all this CPU can imitate: avx2,default; 'none': none)")
    check.add_argument("--only", type=_names, help="restrict to these attacks / label methods")
    check.add_argument("--budget-scale", type=_positive_number, default=1.0, help="scale every budget (0.3 shows the gate catching a weakened attack)")
    check.add_argument("--junit", help="also write the verdicts as JUnit XML to this file (for CI systems)")
    check.add_argument("--out", help="keep the suite's records (and images) in this folder")
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"note: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # notices (e.g. LPIPS unavailable) as one line, no source
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what spawned ranks are started with
    follow_launcher()  # in a spawned rank: beat to the launcher, end with it (before the heavy imports)
    try:
        if args.command == "ls":  # from the index: no registering module (and so no torch) is imported
            from bench.listing import cmd_ls

            return cmd_ls(args)
        from bench.plugins import load_plugins

        load_plugins()
        if args.command == "audit":
            from bench.audit.command import cmd_audit

            return cmd_audit(args)
        from bench import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a program ended by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE
    except OSError as err:  # a file system refusal not caught nearer (full disk, permissions)
        print(f"error: {err.filename or ''}{': ' if err.filename else ''}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
