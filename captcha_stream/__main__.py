"""python -m captcha_stream COMMAND [options]: the commands are listed in COMMANDS below."""

import sys

from .cli import (
    attach_main,
    average_main,
    evaluate_main,
    export_main,
    export_onnx_main,
    plot_main,
    predict_main,
    run,
    slim_main,
    train_addon_main,
    train_main,
    widen_main,
)

COMMANDS = {
    "predict": predict_main,
    "train": train_main,
    "evaluate": evaluate_main,
    "export": export_main,
    "export-onnx": export_onnx_main,
    "plot": plot_main,
    "slim": slim_main,
    "average": average_main,
    "widen": widen_main,
    "train-addon": train_addon_main,
    "attach": attach_main,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(
            f"usage: python -m captcha_stream {{{','.join(COMMANDS)}}} [options]  (--help after a command)",
            file=sys.stderr,
        )
        sys.exit(2)
    run(COMMANDS[sys.argv[1]], sys.argv[2:])


if __name__ == "__main__":
    main()
