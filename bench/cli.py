"""Command line: `python -m bench run|ls|case|leaderboard|claims|check ...` (the `bench` console script is the same)."""

from __future__ import annotations

import argparse
import sys
import warnings

from bench.errors import BenchError

LISTS = ("attacks", "labels", "models", "datasets", "metrics", "presets")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _bools(text: str) -> list[bool]:
    table = {"known": True, "unknown": False, "true": True, "false": False}
    try:
        return [table[v.lower()] for v in text.split(",") if v]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected known/unknown, got {text!r}") from None


def add_scenario_flags(parser: argparse.ArgumentParser, many: bool) -> None:
    """Flags shared by `run` (axes: comma-separated lists) and `case make` (single values)."""
    kind = {"ints": _ints if many else int, "floats": _floats if many else float, "names": _names if many else str}
    suffix = "s" if many else ""
    parser.add_argument(f"--model{suffix}", dest="models" if many else "model", type=kind["names"], help="model name(s), e.g. lenet, convnet, resnet18, timm:<name>")
    parser.add_argument(f"--dataset{suffix}", dest="datasets" if many else "dataset", type=kind["names"], help="dataset name(s) (default: embedded)")
    parser.add_argument("--data-path", help="local copy of the dataset (ImageNet folder, CIFAR binary folder, ...)")
    parser.add_argument("--image-size", type=int, help="square image size in pixels")
    parser.add_argument("--batch-sizes" if many else "--batch-size", dest="batch_sizes" if many else "batch_size", type=kind["ints"])
    parser.add_argument("--repetitions" if many else "--repetition", dest="repetitions" if many else "repetition", type=kind["floats"], help="label repetition rate r = 1 - U/B")
    parser.add_argument("--label-source", choices=("dataset", "model"), help="model: labels drawn from the model's classes independently of image content")
    parser.add_argument("--num-classes", type=int, help="classes of the model's head (default: the dataset's)")
    parser.add_argument("--weights", help="local pretrained checkpoint (torchvision/timm state dict or MoCo v2)")
    parser.add_argument("--train-steps", type=int, help="seeded SGD steps on the dataset before the leaked round")
    parser.add_argument("--bn-mode", choices=("train", "eval"), help="client's BN mode (default train)")
    parser.add_argument("--bn-stats" if many else "--bn-stats", dest="bn_stats", type=_names if many else str, help="threat model BN statistics: none, running, exact")
    if many:
        parser.add_argument("--labels", dest="labels_known", type=_bools, help="threat model labels: known, unknown (comma list)")
        parser.add_argument("--seeds", type=_ints)
    else:
        parser.add_argument("--labels-known", action="store_true", help="the attacker is given the labels")
        parser.add_argument("--seed", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Gradient inversion benchmark")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a sweep of attacks and score them")
    run.add_argument("--attacks", type=_names, help="attack names or globs, comma-separated; 'all' for every attack")
    run.add_argument("--track", choices=("attacks", "labels"), help="labels: label-recovery methods only (one gradient, no optimisation)")
    run.add_argument("--label-methods", type=_names, help="label-recovery methods for --track labels ('all' for every method)")
    run.add_argument("--resume", action="store_true", help="skip runs already recorded as ok in the output folder")
    run.add_argument("--no-images", action="store_true", help="do not write the PNG grid of each run")
    run.add_argument("--preset", help="shipped sweep: smoke, quick (default), paper")
    run.add_argument("--config", help="YAML sweep file (fields of bench.sweep.Sweep)")
    run.add_argument("--budget", type=int, help="iterations per attack (default: the preset's)")
    run.add_argument("--out", default=None, help="folder for records (default runs/<preset>)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under a launch, cuda means cuda:LOCAL_RANK)")
    run.add_argument("--nproc", type=int, default=1, help="local ranks to spawn (gloo on CPU, nccl on CUDA); under torchrun the launcher's ranks are used")
    run.add_argument("--shard-above", type=int, help="with several ranks: batches up to this size run one per rank, larger ones are sharded over all ranks (default: shard every batch)")
    run.add_argument("--lpips-weights", help="AlexNet ImageNet weights for LPIPS (else looked up in torch's cache)")
    add_scenario_flags(run, many=True)

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
    board.add_argument("--runs", required=True, help="folder of records (subfolders included)")
    board.add_argument("--format", default="md", choices=("md", "latex", "csv", "html"))
    board.add_argument("--out", help="file, or folder for leaderboard.<ext>, to write (default: stdout)")
    board.add_argument("--plots", help="folder for PNG plots and per-attack image grids")
    board.add_argument("--metrics", type=_names, help="metrics of the attack tables, comma-separated (default psnr)")
    board.add_argument("--columns", choices=("batch_size", "repetition"), help="column axis of the attack tables (default batch_size)")

    claims = sub.add_parser("claims", help="render the paper-claims table from the published records")
    claims.add_argument("--board", default="leaderboard", help="folder holding records/ (default: leaderboard)")
    claims.add_argument("--out", help="file to write (default: stdout)")

    check = sub.add_parser("check", help="regression gate: a small deterministic suite against committed references")
    check.add_argument("--update", action="store_true", help="rewrite the reference values from the current code")
    check.add_argument("--only", type=_names, help="restrict to these attacks / label methods")
    check.add_argument("--budget-scale", type=float, default=1.0, help="scale every budget (0.1 shows the gate catching a weakened attack)")
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"note: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # notices (e.g. LPIPS unavailable) as one line, no source
    args = build_parser().parse_args(argv)
    try:
        from bench.distributed.launch import should_spawn, spawn_local

        if should_spawn(getattr(args, "nproc", None)):
            return spawn_local(args.nproc, list(sys.argv[1:] if argv is None else argv))
        from bench.plugins import load_plugins

        load_plugins()
        from bench import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
