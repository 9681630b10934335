#!/usr/bin/env bash
# Train a config from the stream on a lent GPU within a fixed wall-time budget, in one `device` run
# (a run lasts at most 10 minutes, so a schedule must fit the time rather than a step count), and
# bring the slim checkpoints and the curve back.
#
#   bash scripts/gpu_run.sh CONFIG BUDGET_SECONDS [train.py options, e.g. --set train.seed=3]
#
# The run gets the budget left after set-up and a reserve as `train.py --minutes`: it measures its own
# step rate and fits its warm-up and cosine schedule to the time (docs/training.md). A run that still
# overruns is stopped by SIGTERM, which saves last.pt (best.pt is kept too).
#
# The device image has no captcha package and another Pillow, and the fast renderer is tested
# against captcha 0.7.1 / Pillow 13 (anything else renders through the slower package path, and
# the images would not be the CPU machine's), so carry those wheels. Once, in this checkout:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl pillow==13.0.0 captcha==0.7.1
# and carry the validation set the config names, so validation is byte for byte the CPU machine's; a
# candidate still to be judged on other sets should not read the test set (eval.final_test=false):
#   run(command="bash scripts/gpu_run.sh configs/classic36-large.yaml 500 --set eval.final_test=false",
#       timeout_s=600, carry=[".whl", "data/val-classic36"])
# Outside the device tool OUT is unset and everything lands in runs/gpu-out.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/gpu_run.sh CONFIG BUDGET_SECONDS [train.py options]" >&2
    exit 2
fi
config=$1
budget=$2
shift 2
started=$(date +%s)
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-runs/gpu-out}
run_dir=${RUN_DIR:-runs/gpu-run}
# Evaluations, the end-of-run test read and the copies back take this long (seconds).
reserve=${RESERVE:-60}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
# Only where the fast renderer's tested pair is missing (the device image), not over a working install.
if ! python3 -c "from captcha_stream.data import fastrender; assert fastrender.supported()" 2> /dev/null &&
    compgen -G "$root/.whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$root"/.whl/*.whl
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
python3 - << 'EOF'
import torch
from captcha_stream.data import fastrender

gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, GPU: {gpu}, fast renderer: {fastrender.supported()}")
EOF
# Every core but the trainer's renders (the default stops at 8 workers).
workers=${WORKERS:-$(($(nproc) - 1))}

left=$((budget - ($(date +%s) - started) - reserve))
if [ "$left" -lt 1 ]; then
    # timeout would read 0 as "no limit" and a negative time as an error: refuse rather than run unguarded.
    echo "error: setting up used the budget ($budget s, $reserve s of it reserved); give more seconds" >&2
    exit 2
fi
minutes=$(python3 -c "print(round($left / 60, 3))")
echo "training $config for $minutes minutes"
rc=0
# train.py fits its schedule to the minutes (train.minutes); the timeout is only a guard.
timeout --signal=TERM "$((left + reserve / 2))" python3 "$root/train.py" --config "$config" --minutes "$minutes" \
    --run-dir "$run_dir" --no-progress --workers "$workers" "$@" 2>&1 | tee "$out/train.log" || rc=$?
echo "train.py exit status $rc after $(($(date +%s) - started)) s"

cp "$run_dir/metrics.jsonl" "$out/metrics.jsonl"
for name in best last; do
    if [ -f "$run_dir/$name.pt" ]; then
        python3 -m captcha_stream slim "$run_dir/$name.pt" "$out/$name-slim.pt"
    fi
done
