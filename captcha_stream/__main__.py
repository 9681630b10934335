"""captcha-stream COMMAND [options] (also python -m captcha_stream): the commands, a line each, in COMMANDS."""

import sys

from . import cli

# name -> (entry point in cli.py, what it does); no torch is imported before a command's arguments parse.
COMMANDS = {
    "demo": (cli.demo_main, "render fresh captchas and read them with a shipped reader: see it work"),
    "predict": (cli.predict_main, "read captcha images with a shipped reader or your own checkpoint"),
    "evaluate": (cli.evaluate_main, "measure a reader on a labelled set (--view: a page of every captcha)"),
    "train": (cli.train_main, "train a reader on an endless stream of rendered captchas (or a folder)"),
    "export": (cli.export_main, "freeze a seeded set of captchas to PNG files + labels.csv"),
    "export-onnx": (cli.export_onnx_main, "export a reader to ONNX (needs the [onnx] extra)"),
    "plot": (cli.plot_main, "draw the learning curve of one run, or several runs on one chart"),
    "slim": (cli.slim_main, "copy a checkpoint with only what reading needs (optionally less some stages)"),
    "average": (cli.average_main, "average the weights of checkpoints continued from one start"),
    "widen": (cli.widen_main, "a wider copy of a trained reader that reads exactly as it does"),
    "train-addon": (cli.train_addon_main, "train a reader stage on its own: denoiser or second_look"),
    "attach": (cli.attach_main, "put stages trained by train-addon into a reader's checkpoint"),
    "audit": (cli.audit_main, "how fast does a model break a captcha scheme: train on it, write a report"),
    "serve": (cli.serve_main, "serve a reader over HTTP (needs the [serve] extra)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: captcha-stream COMMAND [options]   (COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if args else 2)
    if args[0] not in COMMANDS:
        print(f"error: no command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    cli.run(COMMANDS[args[0]][0], args[1:])


if __name__ == "__main__":
    main()
