"""Command-line entry points. Each parses arguments and calls into the package.

Mistakes a user can fix raise CaptchaStreamError; `run` prints its one-line message and
exits with status 2 (a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import resolve_config
from .errors import CaptchaStreamError

CHECKPOINT_HELP = "a checkpoint file, or a shipped reader: captcha62 (the default), captcha62-160x60, classic36"


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad argument is one `error:` line like every other mistake (argparse's
    own prints the usage block first), with exit status 2 from `run`."""

    def error(self, message: str) -> NoReturn:
        raise CaptchaStreamError(f"{message} (see {self.prog} --help)")


def prog(command: str, script: str | None = None) -> str:
    """The name a command's usage line goes by: the script it was started as, or `captcha-stream COMMAND`."""
    if script and Path(sys.argv[0]).name == script:
        return script
    return f"captcha-stream {command}"


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    # Under LC_ALL=C or PYTHONIOENCODING=ascii a non-ASCII symbol or file name must not end the command.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = main([a for a in args if a != "--debug"])
    except CaptchaStreamError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of our output left (`predict ... | head -1`): not an error of ours. Point stdout
        # at nothing so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(code or 0)


def let_idle_threads_sleep() -> None:
    """Before torch loads: idle OpenMP threads sleep instead of spinning. Where render workers share
    the cores with the trainer, a thread spinning through a step's serial stretches (the recurrent
    layer's time steps, the optimizer) holds a core a worker could render on: on 2 cores that cost
    2-6% of the images per second (docs/ablations.md). An OMP_WAIT_POLICY already set wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def export_main(argv: Sequence[str] | None = None) -> int:
    from .config import load_config

    parser = Parser(
        prog=prog("export", "export_fixed_set.py"),
        description="Freeze a seeded set of captchas to PNG files + labels.csv (same seed, same bytes).",
    )
    parser.add_argument("--n", type=int, default=2000, help="number of images to write (default 2000)")
    parser.add_argument("--out", help="output folder (default data/train, or the config's test folder with -T)")
    parser.add_argument("--seed", type=int, help="base seed (default 0, or the config's eval.test_seed with -T)")
    parser.add_argument("--config", help="YAML config whose data section describes the captchas")
    parser.add_argument("-E", "--extend", action="store_true", help="append N images to an existing set")
    parser.add_argument("-T", "--test", action="store_true", help="write the test set (default folder data/test)")
    parser.add_argument("--force", action="store_true", help="replace an existing different set")
    parser.add_argument("--workers", type=int, help="processes to render with (default: all cores)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    from .data.frozen import export_set

    cfg = load_config(resolve_config(args.config) if args.config else None)
    if args.test:
        out = args.out or cfg.eval.test_dir
        seed = cfg.eval.test_seed if args.seed is None else args.seed
    else:
        out = args.out or "data/train"
        seed = 0 if args.seed is None else args.seed
    if args.workers is not None and args.workers < 1:
        raise CaptchaStreamError(f"--workers: must be at least 1, got {args.workers}")
    export_set(out, args.n, cfg.data, seed=seed, extend=args.extend, force=args.force, workers=args.workers)
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    from .config import load_config, parse_override

    parser = Parser(prog=prog("train", "train.py"), description="Train a CRNN + CTC captcha reader.")
    parser.add_argument("--config", help="YAML config (default configs/stream.yaml)")
    parser.add_argument("--steps", type=int, help="optimizer steps in total (train.steps)")
    parser.add_argument(
        "--minutes",
        type=float,
        help="train to this wall-time budget; the schedule is fitted to it (train.minutes; with --steps, "
        "the first limit reached wins)",
    )
    parser.add_argument("--batch-size", type=int, help="images per step (train.batch_size)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (train.device)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (train.num_workers)")
    parser.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/<config name>)")
    parser.add_argument("--train-dir", help="train on a labelled folder instead of the rendered stream")
    parser.add_argument("--labels", help="labels CSV of --train-dir")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    let_idle_threads_sleep()
    from .train.loop import train
    from .train.processes import launch, plan_processes
    from .train.run import resume_config

    overrides: dict[str, object] = dict(parse_override(s) for s in args.set)
    for key, value in [
        ("train.steps", args.steps),
        ("train.minutes", args.minutes),
        ("train.batch_size", args.batch_size),
        ("train.device", args.device),
        ("train.num_workers", args.workers),
        ("train.run_dir", args.run_dir),
        ("train.train_dir", args.train_dir),
        ("train.train_labels", args.labels),
    ]:
        if value is not None:
            overrides[key] = value
    config_path = resolve_config(args.config)
    cfg = load_config(config_path, overrides)
    if args.resume:
        # The run's own config wins; only what was given on this command line changes it.
        cfg = resume_config(cfg, overrides)
    cfg, launches = plan_processes(cfg)
    if launches:
        return launch(cfg, list(sys.argv[1:] if argv is None else argv))
    result = train(cfg, resume=args.resume, progress=not args.no_progress)
    if not result["main"]:
        return 0  # under torchrun, rank 0 alone validated and reports
    final = result["final_eval"] or {}
    test = result["test"]
    tested = f"; best.pt (step {test['best_step']}) on the test set {test['full_string_accuracy']:.2%}" if test else ""
    if test and test.get("tta"):
        tested += f" ({test['tta']['full_string_accuracy']:.2%} with its reader's shifts, eval.tta)"
    print(
        f"done: {result['step']} steps in {result['elapsed'] / 60:.1f} min; "
        f"validation full-string accuracy {final.get('full_string_accuracy', float('nan')):.2%} "
        f"(best {result['best_accuracy']:.2%}){tested}; checkpoints in {result['run_dir']}"
    )
    return 0


def find_checkpoint(given: str | None) -> Path:
    """The checkpoint a reading command uses: a path, a shipped reader's name, or the shipped default.

    The default says its name on stderr: a reading never comes from a checkpoint nobody chose.
    """
    from .reader.pretrained import describe, resolve_checkpoint

    path = resolve_checkpoint(given)
    if given is None:
        print(f"using {describe(path)}", file=sys.stderr)
    return path


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    args = _evaluate_parser().parse_args(argv)  # before torch is imported: --help answers at once
    from .config import parse_tta
    from .eval.evaluation import evaluate_checkpoint, format_report

    if args.confusions < 0:
        raise CaptchaStreamError(f"--confusions: must be >= 0, got {args.confusions}")
    if args.sheet_count < 1:
        raise CaptchaStreamError(f"--sheet-count: must be >= 1, got {args.sheet_count}")
    if args.samples is not None and args.samples < 0:
        raise CaptchaStreamError(f"--samples: must be >= 0, got {args.samples}")
    if args.bn_refresh < 0:
        raise CaptchaStreamError(f"--bn-refresh: must be >= 0 (0 = off), got {args.bn_refresh}")
    from .atomic import check_writable

    ckpt = find_checkpoint(args.checkpoint)
    # Checked before the evaluation, not found unwritable after it.
    for flag, out in (("--sheet", args.sheet), ("--json", args.json), ("--view-out", args.view_out)):
        if out:
            check_writable(out, flag)
    if args.view and not args.view_out:
        check_writable(default_view(ckpt, Path(args.data or "test")), "--view (beside the checkpoint; --view-out)")
    ev = evaluate_checkpoint(
        ckpt,
        data=args.data,
        labels=args.labels,
        beam=args.beam,
        length_prior=not args.no_length_prior,
        tta=None if args.tta is None else parse_tta(args.tta),
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        prepare=_bn_refresh(args.bn_refresh),
    )
    measured = f", BatchNorm measured on {args.bn_refresh} stream images" if args.bn_refresh else ""
    print(f"checkpoint {ckpt} (step {ev.step}), data {ev.data_dir}, {ev.decoding} decoding{measured}")
    samples = ev.cfg.eval.samples if args.samples is None else args.samples
    print(format_report(ev.results, samples, args.confusions))
    _evaluate_outputs(args, ckpt, ev.data_dir, ev.paths, ev.results)
    return 0


def default_view(ckpt: Path, data_dir: Path) -> Path:
    """Beside a checkpoint of one's own; in the current folder for a shipped reader (the installed
    package's folder may not be writable, and is no place for pages)."""
    from .reader.pretrained import WEIGHTS

    if ckpt.resolve().parent == WEIGHTS.resolve():
        return Path(f"view-{ckpt.stem}-{data_dir.name}.html")
    return ckpt.parent / f"view-{data_dir.name}.html"


def _bn_refresh(n: int) -> Callable[..., Any] | None:
    if n == 0:
        return None
    from .train.loop import with_measured_statistics

    return lambda model, cfg, device: with_measured_statistics(model, cfg, device, n)


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=prog("evaluate", "evaluate.py"), description="Measure a trained reader on a labelled set.")
    parser.add_argument(
        "--checkpoint",
        help=CHECKPOINT_HELP,
    )
    parser.add_argument("--data", help="folder of labelled images (default: the checkpoint config's test set)")
    parser.add_argument("--labels", help="labels CSV when not DIR/labels.csv")
    parser.add_argument("-V", "--view", action="store_true", help="write (and open) a page of every captcha")
    parser.add_argument(
        "--view-out", help="where --view writes its page (default: beside the checkpoint; a shipped reader's: here)"
    )
    parser.add_argument("--sheet", metavar="PNG", help="write the first mistakes (then hits) as one PNG picture")
    parser.add_argument("--sheet-count", type=int, default=24, help="captchas on the --sheet picture (default 24)")
    parser.add_argument("--beam", type=int, default=None, help="beam width (0 = greedy; default from config)")
    parser.add_argument(
        "--bn-refresh",
        type=int,
        default=0,
        metavar="N",
        help="measure BatchNorm statistics anew on N training-stream images first: for a last.pt saved "
        "mid-run, whose running averages lag its weights (best.pt already holds measured ones; 0 = off)",
    )
    parser.add_argument(
        "--no-length-prior",
        action="store_true",
        help="let beam search answer with any length, not only data.min_length..max_length",
    )
    parser.add_argument(
        "--tta",
        metavar="PIXELS",
        help="also read each image moved PIXELS (e.g. 2 or 2,4) left and right, keep the best-agreed reading "
        "(default eval.tta; 0 = off)",
    )
    parser.add_argument("--json", help="write the headline numbers to this JSON file")
    parser.add_argument("--samples", type=int, default=None, help="sample predictions to print")
    parser.add_argument("--confusions", type=int, default=10, help="confused symbol pairs to list (default 10)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _evaluate_outputs(args: argparse.Namespace, ckpt: Path, data_dir: Path, paths: list[Path], results: Any) -> None:
    """What evaluate writes besides the report: --json, the --view page, the --sheet picture."""
    from .atomic import replacing
    from .eval import metrics
    from .eval.view import open_view, write_sheet, write_view

    if args.json:
        low, high = metrics.full_string_interval(results.preds, results.labels)
        report = {**results.summary(), "full_string_interval_95": [low, high]}
        with replacing(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.view:
        out = Path(args.view_out) if args.view_out else default_view(ckpt, data_dir)
        write_view(out, paths, results.labels, results.preds, results.confidences, title=f"{ckpt} on {data_dir}")
        opened = open_view(out)
        print(f"view: {out}{' (opened in the browser)' if opened else ''}")
    if args.sheet:
        write_sheet(args.sheet, paths, results.labels, results.preds, f"{ckpt} on {data_dir}", args.sheet_count)
        print(f"sheet: {args.sheet}")


def predict_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=prog("predict"), description="Read captcha images; prints path<TAB>text<TAB>confidence.")
    parser.add_argument("images", nargs="+", help="image files (a line each: path, text, confidence; or path, error)")
    parser.add_argument(
        "--checkpoint",
        help=CHECKPOINT_HELP + ", or an exported .onnx model",
    )
    parser.add_argument("--beam", type=int, default=0, help="beam width (0 = greedy)")
    parser.add_argument(
        "--tta", metavar="PIXELS", help="also read each image moved PIXELS (2 or 2,4) left and right (default eval.tta)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=["torch", "onnx"], help="default: onnx for .onnx files, else torch")
    args = parser.parse_args(argv)
    from .config import check_tta, parse_tta
    from .reader.recognizer import Recognizer

    if args.batch_size < 1:
        raise CaptchaStreamError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.beam < 0:
        raise CaptchaStreamError(f"--beam: must be >= 0, got {args.beam}")
    from .device import pick_device

    device = pick_device(args.device, "--device")
    reader = Recognizer.from_checkpoint(find_checkpoint(args.checkpoint), device=device, backend=args.backend)
    tta = None if args.tta is None else parse_tta(args.tta)
    if tta is not None:
        check_tta(tta, reader.cfg.data, "--tta")
    failed = 0
    for start in range(0, len(args.images), args.batch_size):
        chunk = args.images[start : start + args.batch_size]
        preds = reader.predict(chunk, beam=args.beam, batch_size=args.batch_size, tta=tta)
        for path, pred in zip(chunk, preds):
            # An image that cannot be read gets its error on its own line; the others are still read.
            print(f"{path}\terror: {pred.error}" if pred.error else f"{path}\t{pred.text}\t{pred.confidence:.4f}")
            failed += pred.error is not None
    return 1 if failed else 0


def export_onnx_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=prog("export-onnx"), description="Export a checkpoint to ONNX (needs the [onnx] extra).")
    parser.add_argument(
        "--checkpoint",
        help=CHECKPOINT_HELP,
    )
    parser.add_argument("--out", required=True, help="the .onnx file to write (plus OUT.json beside it)")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    from .atomic import check_writable
    from .reader.onnx import export_onnx

    check_writable(args.out, "--out")
    check_writable(args.out + ".json", "--out")
    out = export_onnx(find_checkpoint(args.checkpoint), args.out, args.opset)
    print(f"wrote {out} and {out.name}.json")
    return 0


def plot_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("plot"),
        description="Draw RUN_DIR/curve.png (training loss and validation accuracy by step); given several runs "
        "and --out, one chart comparing their validation accuracy.",
    )
    parser.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files; NAME=PATH sets a label")
    parser.add_argument("--out", help="PNG to write (default RUN_DIR/curve.png; required for several runs)")
    parser.add_argument(
        "--metric",
        default="full_string_accuracy",
        choices=["full_string_accuracy", "char_accuracy", "case_insensitive_accuracy"],
        help="what to compare (several runs only)",
    )
    args = parser.parse_args(argv)
    from .eval.plot import draw_comparison, draw_curve

    labels, paths = [], []
    for item in args.runs:
        label, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        src = Path(path)
        if not (src.is_file() or (src / "metrics.jsonl").is_file()):
            raise CaptchaStreamError(f"{path}: no metrics.jsonl (not a run directory or metrics file?)")
        labels.append(label or (src.parent.name if src.is_file() and src.name == "metrics.jsonl" else src.stem))
        paths.append(src)
    if args.out:
        from .atomic import check_writable

        check_writable(args.out, "--out")
    if len(paths) == 1 and paths[0].is_dir():
        out = draw_curve(paths[0], args.out)
        if out is None:
            raise CaptchaStreamError(f"{paths[0]}: no training records yet")
    else:
        if not args.out:
            raise CaptchaStreamError("--out: needed when comparing runs or plotting a metrics file")
        try:
            out = draw_comparison(paths, labels, args.out, args.metric)
        except ValueError as exc:
            raise CaptchaStreamError(f"{', '.join(map(str, paths))}: {exc}") from None
    print(out)
    return 0


def _copy_parser(command: str, description: str, set_metavar: str, set_help: str) -> argparse.ArgumentParser:
    """SRC DST [--set KEY=VALUE ...]: the arguments of the commands that write a changed copy of a checkpoint."""
    parser = Parser(prog=prog(command), description=description)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--set", action="append", default=[], metavar=set_metavar, help=set_help)
    return parser


def slim_main(argv: Sequence[str] | None = None) -> int:
    from .config import parse_override
    from .reader import stages

    parser = _copy_parser(
        "slim",
        "Copy a checkpoint without its optimizer state (for shipping).",
        "eval.KEY=VALUE",
        "change an eval setting in the copy's config, e.g. which test set it is read on (repeatable)",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=list(stages.BY_NAME),
        metavar="STAGE",
        help=f"leave out a reader stage ({', '.join(stages.BY_NAME)}; repeatable): all of them, the CRNN alone",
    )
    # The spellings of the documented commands from before the stage list.
    for name in stages.BY_NAME:
        parser.add_argument(
            f"--without-{name.replace('_', '-')}",
            dest="without",
            action="append_const",
            const=name,
            help=argparse.SUPPRESS,
        )
    args = parser.parse_args(argv)
    from .atomic import check_writable
    from .tools.slim import slim_checkpoint

    check_writable(args.dst, "DST")
    overrides = dict(parse_override(s) for s in args.set)
    for key in overrides:
        if not key.startswith("eval."):
            raise CaptchaStreamError(f"--set {key}: slim changes only eval.* settings (the weights fix the rest)")
    from .reader.pretrained import resolve_checkpoint

    out = slim_checkpoint(resolve_checkpoint(args.src), args.dst, overrides, without=dict.fromkeys(args.without))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def average_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("average"),
        description="Average the weights of checkpoints continued from one starting point (a slim checkpoint).",
    )
    parser.add_argument("src", nargs="+", help="checkpoints of one model and data (each read with its read_with)")
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    args = parser.parse_args(argv)
    from .atomic import check_writable
    from .tools.average import average_checkpoints

    check_writable(args.out, "--out")
    out = average_checkpoints(args.src, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), the mean of {len(args.src)} checkpoints")
    return 0


def widen_main(argv: Sequence[str] | None = None) -> int:
    from .config import parse_override

    parser = _copy_parser(
        "widen",
        "Write a wider copy of a trained model that reads exactly as it does; continue "
        "training it with --set train.init_from=DST and the same --set model.* options.",
        "model.KEY=VALUE",
        "the new model.cnn_channels (a list, each stage at least as wide) and/or model.rnn_hidden",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the new units' random initial weights")
    args = parser.parse_args(argv)
    from .atomic import check_writable
    from .tools.widen import widen_checkpoint

    check_writable(args.dst, "DST")
    overrides = dict(parse_override(s) for s in args.set)
    out = widen_checkpoint(args.src, args.dst, overrides, args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), widened with {' '.join(args.set)}")
    return 0


def train_addon_main(argv: Sequence[str] | None = None) -> int:
    from .atomic import replacing
    from .config import load_config, parse_override

    parser = Parser(
        prog=prog("train-addon"),
        description="Train a reader stage on its own: a denoiser, or a second look's glyph classifier "
        "(then put it into a reader with: python -m captcha_stream attach).",
    )
    parser.add_argument("kind", choices=["denoiser", "second_look"], help="which stage")
    parser.add_argument("--config", required=True, help="YAML config: its data: and addon: sections")
    parser.add_argument("--out", required=True, help="weights file to write (at every measurement, atomically)")
    parser.add_argument("--steps", type=int, help="optimizer steps (addon.steps)")
    parser.add_argument("--set", action="append", default=[], metavar="addon.KEY=VALUE", help="override (repeatable)")
    parser.add_argument("--json", help="also write the held-out curve to this JSON file")
    args = parser.parse_args(argv)
    let_idle_threads_sleep()
    from .train.addons import train_addon

    overrides: dict[str, object] = dict(parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["addon.steps"] = args.steps
    from .atomic import check_writable

    # Checked before the training, not found unwritable after it.
    check_writable(args.out, "--out")
    if args.json:
        check_writable(args.json, "--json")
    cfg = load_config(resolve_config(args.config), overrides)
    curve = train_addon(args.kind, cfg, args.out)
    if args.json:
        with replacing(args.json) as tmp:
            tmp.write_text(json.dumps({"config": cfg.to_dict(), "curve": curve}, indent=1) + "\n")
    print(f"wrote {args.out} (step {curve[-1]['step']})")
    return 0


def attach_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("attach"),
        description="Write a reader's checkpoint with stages trained by train-addon put into it.",
    )
    parser.add_argument("reader", help="the reader's checkpoint")
    parser.add_argument("out", help="the checkpoint to write")
    parser.add_argument("--denoiser", help="a denoiser (train-addon file, or a checkpoint carrying one)")
    parser.add_argument("--second-look", help="a glyph classifier (train-addon file, or a checkpoint carrying one)")
    parser.add_argument(
        "--peak-to-centre", type=int, help="pixels from a CTC peak to its glyph's middle (default: classic36's, 6)"
    )
    parser.add_argument(
        "--last-gap",
        type=int,
        help="pixels from the second-to-last peak to the last glyph's middle (default: classic36's, 41; "
        "-1: the last is not looked at)",
    )
    args = parser.parse_args(argv)
    from .atomic import check_writable
    from .tools.attach import attach_stages

    if not (args.denoiser or args.second_look):
        raise CaptchaStreamError("attach: name at least one stage: --denoiser FILE and/or --second-look FILE")
    check_writable(args.out, "OUT")
    placement: dict[str, Any] = {}
    if args.peak_to_centre is not None:
        placement["peak_to_centre"] = args.peak_to_centre
    if args.last_gap is not None:
        placement["last_gap"] = None if args.last_gap < 0 else args.last_gap
    from .reader.pretrained import resolve_checkpoint

    reader = resolve_checkpoint(args.reader)
    out = attach_stages(reader, args.out, args.denoiser, args.second_look, **placement)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("serve"),
        description="Serve a reader over HTTP: POST /read, POST /read/batch, GET /health (the [serve] extra).",
    )
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP + ", or an exported .onnx model")
    parser.add_argument("--backend", choices=["torch", "onnx"], help="onnx exports a .pt checkpoint first")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="largest request body (default 2 MB)")
    parser.add_argument("--max-pixels", type=int, default=4_000_000, help="largest image (default 4 M pixels)")
    args = parser.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        raise CaptchaStreamError("serve needs the [serve] extra: pip install 'captcha-stream[serve]'") from None
    from .reader.pretrained import describe
    from .reader.recognizer import Recognizer
    from .server import create_app

    if not 0 < args.port < 65536:
        raise CaptchaStreamError(f"--port: must be 1..65535, got {args.port}")
    for flag, value in (("--max-bytes", args.max_bytes), ("--max-pixels", args.max_pixels)):
        if not 1 <= value <= 2**31:
            # Pillow refuses images past 2**31 pixels anyway; a body that large is no captcha.
            raise CaptchaStreamError(f"{flag}: must be in 1..{2**31}, got {value}")
    path = find_checkpoint(args.checkpoint)
    model = describe(path).split(" (")[0]  # the shipped reader's name, or the path given
    if args.backend == "onnx" and path.suffix != ".onnx":
        import tempfile

        from .reader.onnx import export_onnx

        path = export_onnx(path, Path(tempfile.mkdtemp()) / f"{path.stem}.onnx")
    reader = Recognizer.from_checkpoint(path, backend=args.backend)
    app = create_app(reader, model, args.max_bytes, args.max_pixels)
    print(f"serving {model} ({reader.backend}) on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def audit_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("audit"),
        description="How fast does a model break a captcha scheme? Trains a reader on the scheme from scratch "
        "with the best recipe for this machine and writes a report (HTML, JSON, PNG).",
    )
    parser.add_argument("--config", help="the scheme: a config whose data: section describes it")
    parser.add_argument("--compare", nargs="+", metavar="SCHEME.yaml", help="audit several schemes, one chart")
    parser.add_argument("--minutes", type=float, help="wall-time budget per scheme")
    parser.add_argument("--steps", type=int, help="a step budget instead of minutes")
    parser.add_argument("--points", type=int, help="validations over the budget: the curve's points (default 10)")
    parser.add_argument("--out", required=True, help="folder for the report (one subfolder per scheme with --compare)")
    parser.add_argument("--recipe", help="the training recipe's config (default: cpu, or stream with a GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override the recipe")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    let_idle_threads_sleep()
    from .atomic import check_writable
    from .audit.report import write_comparison, write_report
    from .audit.run import POINTS, Budget, audit_scheme
    from .config import parse_override

    if bool(args.config) == bool(args.compare):
        raise CaptchaStreamError("give a scheme with --config SCHEME.yaml, or several with --compare A.yaml B.yaml")
    if (args.minutes is None) == (args.steps is None):
        raise CaptchaStreamError("give a budget: --minutes M or --steps N")
    if args.minutes is not None and not 0 < args.minutes < 10**6:
        raise CaptchaStreamError(f"--minutes: must be a positive number of minutes, got {args.minutes}")
    if args.steps is not None and args.steps < 1:
        raise CaptchaStreamError(f"--steps: must be at least 1, got {args.steps}")
    if args.points is not None and not 1 <= args.points <= 1000:
        raise CaptchaStreamError(f"--points: must be a number of validations from 1 to 1000, got {args.points}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CaptchaStreamError(f"--out: {out} is a file, expected a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptchaStreamError(f"--out: cannot make {out} ({exc.strerror or exc})") from None
    check_writable(out / "report.json", "--out")
    budget = Budget(minutes=args.minutes or 0.0, steps=args.steps or 0, points=args.points or POINTS)
    sets = dict(parse_override(s) for s in args.set)
    schemes = [resolve_config(c) for c in (args.compare or [args.config])]
    names = [s.stem for s in schemes]
    if len(set(names)) != len(names):
        raise CaptchaStreamError(f"--compare: two schemes share a file name ({', '.join(names)}); rename one")
    reports = {}
    for scheme, name in zip(schemes, names):
        folder = out / name if args.compare else out
        report = audit_scheme(scheme, budget, folder, args.recipe, sets, progress=not args.no_progress)
        page = write_report(report, folder)
        print(f"{name}: {report['verdict']}\nreport: {page}")
        reports[name] = report
    if args.compare:
        print(f"comparison: {write_comparison(reports, out)}")
    return 0


def demo_main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=prog("demo"),
        description="Render fresh captchas, read them with a shipped reader (or yours), and show the result "
        "as a table and a page.",
    )
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--n", type=int, default=24, help="captchas to render and read (default 24)")
    parser.add_argument("--seed", type=int, help="seed of the captchas (default: new ones every time)")
    parser.add_argument("--out", default="demo", help="folder for the captchas and the page (default demo/)")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 10_000:
        raise CaptchaStreamError(f"--n: must be in 1..10000 (a demo is for looking at), got {args.n}")
    import random

    from .checkpoint import load_checkpoint
    from .config import config_from_dict
    from .data.frozen import export_set, read_meta

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and read_meta(out) is None)):
        # A demo replaces its own earlier captchas, never a folder of something else.
        raise CaptchaStreamError(f"{out}: exists and holds something else than a demo; choose another --out")
    ckpt = find_checkpoint(args.checkpoint)
    data = config_from_dict(load_checkpoint(ckpt)["config"]).data
    seed = random.SystemRandom().randrange(10**9) if args.seed is None else args.seed
    export_set(out, args.n, data, seed=seed, force=True, workers=1, progress=False, log=lambda s: None)
    print(f"rendered {args.n} captchas into {out}/ (seed {seed}: --seed {seed} draws them again)")
    view = ["--view", "--view-out", str(out / "view.html"), "--samples", str(min(args.n, 50)), "--no-progress"]
    return evaluate_main(["--checkpoint", str(ckpt), "--data", str(out), "--confusions", "0", *view])
