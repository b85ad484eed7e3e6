"""The `sciformer` command line: every domain (a domains/<name>/ folder, or a package in the `sciformer.domains`
entry-point group) is reached through the same registry and the same commands."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from core import domain as registry
from core.cpu import reuse_freed_memory
from core.errors import UserError
from core.logs import configure_logging

log = logging.getLogger("sciformer")


def _path(text: str) -> Path:
    """A path argument; an empty one (`-i ""`, an unset shell variable) is refused, not read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; name a file or folder")
    return Path(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _verbosity(p: argparse.ArgumentParser, top: bool = False) -> None:
    # accepted before and after the subcommand (`sciformer -q predict` and `sciformer predict -q`); the
    # subcommand's copies default to SUPPRESS so they never overwrite what was given before it
    default = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("-v", "--verbose", action="count", help="more logging (-vv for debug)",
                   **({"default": 0} if top else default))
    p.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress output",
                   **({"default": False} if top else default))


def _common(p: argparse.ArgumentParser, needs_domain: bool = True,
            set_help: str = "override one config value, e.g. --set train.lr=1e-3 (repeatable)") -> None:
    _verbosity(p)
    if needs_domain:
        p.add_argument("-d", "--domain", choices=registry.registered_names(),
                       help="domain name (may be left out where --model, or train's and evaluate's prepared -i, "
                            "records it)")
    p.add_argument("--config", help="YAML file overriding the domain's defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sciformer", description=__doc__)
    _verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _verbosity(sub.add_parser("list", help="domains, their tasks and stages, and the attention backends"))
    _verbosity(sub.add_parser("doctor", help="check every domain's packages import and work; device, threads, Triton"))

    p = sub.add_parser("validate", help="check a config (and optionally a prediction input) without running")
    _common(p)
    p.add_argument("-i", "--input", type=_path, help="an input file for `predict` to check as well")
    p.add_argument("--model", type=_path, help="run directory the input would be predicted with")

    p = sub.add_parser("prepare", help="prepare (clean, featurize, split) the domain's data")
    _common(p)
    p.add_argument("-o", "--output", type=_path, required=True, help="directory for the prepared data")

    p = sub.add_parser("train", help="train one stage (an ensemble of seeds for the final stage)")
    _common(p)
    p.add_argument("-i", "--input", type=_path, required=True, help="prepared data directory")
    p.add_argument("-o", "--output", type=_path, required=True, help="run directory to write")
    p.add_argument("--stage", help="training stage (default: the domain's last stage, e.g. fine-tuning)")
    p.add_argument("--init", type=_path, help="run directory whose weights initialize the model (e.g. pretraining)")
    p.add_argument("-j", "--jobs", type=_positive, default=1,
                   help="ensemble members trained in parallel processes (one torch thread each)")
    p.add_argument("--nproc", type=int, default=1,
                   help="train each member on N processes with DistributedDataParallel (gloo on CPU, nccl on "
                        "GPU; same global batch as one process); under torchrun the group comes from torchrun")

    p = sub.add_parser("evaluate", help="model vs baselines on the prepared test split")
    _common(p)
    p.add_argument("-i", "--input", type=_path, required=True, help="prepared data directory")
    p.add_argument("--model", type=_path, required=True, help="trained run directory")
    p.add_argument("-o", "--output", type=_path, required=True, help="metrics JSON to write")
    p.add_argument("--predictions", type=_path, help="per-sample test predictions (default: beside -o)")

    p = sub.add_parser("predict", help="batch prediction on new data (the formats depend on the model's task: "
                                       "`sciformer list`, the domain's README), streamed in batches")
    _common(p, set_help="change a prediction setting for this run, e.g. --set train.threads=2 (repeatable); a "
                        "trained model keeps its other settings (a different value is named in a warning)")
    p.add_argument("-i", "--input", type=_path, required=True,
                   help="input: a table (.csv/.parquet), a file, a folder or a CSV manifest, as the task reads")
    p.add_argument("-o", "--output", type=_path, required=True,
                   help="output: a table (.csv/.parquet), a file (e.g. .npy) or a folder, as the task writes; "
                        "never the input")
    p.add_argument("--model", type=_path, required=True, help="trained run directory")
    p.add_argument("--on-invalid", default="mark", choices=["mark", "skip", "error"],
                   help="items the model cannot predict: mark them in `status` (default), drop them from the output "
                        "table (an array output such as a .npy map keeps every item, as mark), or stop at the first")
    p.add_argument("--chunk-size", type=_positive, default=10_000, help="items (rows) per batch")
    p.add_argument("-j", "--jobs", type=_positive, default=1,
                   help="worker processes predicting batches in parallel (output in input order)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="fp32 (as trained, the default) or bf16 autocast: faster on GPUs and on CPUs with bf16 "
                        "instructions (AVX512-BF16, AMX), outputs differ at bf16 rounding (docs/benchmarks.md)")

    p = sub.add_parser("split", help="split a large input (table or folder) into N shards for parallel predict jobs")
    _verbosity(p)
    p.add_argument("-i", "--input", type=_path, required=True, help="a .csv/.parquet table or a folder of files")
    p.add_argument("-o", "--output", type=_path, required=True, help="folder for shard-0000.* ...")
    p.add_argument("-n", "--shards", type=int, required=True, help="number of shards")

    p = sub.add_parser("gather", help="join the shard outputs of predict (in shard order) into one output set")
    _verbosity(p)
    p.add_argument("-i", "--input", type=_path, nargs="+", required=True,
                   help="the shards' prediction outputs, in shard order")
    p.add_argument("-o", "--output", type=_path, required=True, help="the whole output (same kind as the shards')")

    p = sub.add_parser("report", help="plots and the metrics table from an evaluate output")
    _common(p)
    p.add_argument("-i", "--input", type=_path, required=True, help="metrics JSON written by `evaluate`")
    p.add_argument("-o", "--output", type=_path, required=True, help="directory for the report files")
    return parser


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like an exception: staged outputs are removed on the way out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else
                                                   logging.INFO if args.verbose else logging.WARNING)
        configure_logging(level)
        reuse_freed_memory()   # before any tensor is allocated
        if not args.verbose:  # library chatter (pandas, numpy, sklearn) is not for users; -v shows it
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", message="attention backend")  # ours: a slower fallback
        from core import commands  # heavy imports (torch, pandas) only after argument parsing
        return getattr(commands, f"cmd_{args.command}")(args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left (outputs appear only when complete)", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code > 128:
            print("terminated; nothing half-written was left (outputs appear only when complete)", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
