#!/usr/bin/env bash
# Train a config from the stream on a lent GPU within a fixed wall-time budget, in one `device` run
# (a run lasts at most 10 minutes, so a schedule must fit the time rather than a step count), and
# bring the slim checkpoints and the curve back.
#
#   bash scripts/gpu_run.sh CONFIG BUDGET_SECONDS [train.py options, e.g. --set train.seed=3]
#
# A short probe run measures this machine's training rate for the config; the real run then gets
# as many steps as fit the budget left, so its warm-up and cosine schedule end where the time does.
# A run that still overruns is stopped by SIGTERM, which saves last.pt (best.pt is kept too).
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
probe_dir=${PROBE_DIR:-runs/gpu-probe}
probe_steps=${PROBE_STEPS:-200}
# Evaluations, the end-of-run test read and the copies back take this long (seconds).
reserve=${RESERVE:-60}
mkdir -p "$out"
rm -rf "$probe_dir"  # the probe is thrown away; train.py refuses to overwrite a real run
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

python3 "$root/train.py" --config "$config" --steps "$probe_steps" --run-dir "$probe_dir" --no-progress --workers "$workers" \
    "$@" --set train.log_every=$(((probe_steps + 7) / 8)) --set train.eval_every=1000000 --set train.checkpoint_every=1000000 \
    > "$out/probe.log" 2>&1 || { tail -20 "$out/probe.log"; exit 1; }

left=$((budget - ($(date +%s) - started) - reserve))
if [ "$left" -lt 1 ]; then
    # timeout would read 0 as "no limit" and a negative time as an error: refuse rather than run unguarded.
    echo "error: the probe used up the budget ($budget s, $reserve s of it reserved); give more seconds" >&2
    exit 2
fi
steps=$(python3 - "$probe_dir/metrics.jsonl" "$left" << 'EOF'
import json
import statistics
import sys

records = [json.loads(line) for line in open(sys.argv[1])]
batch = next(r["global_batch"] for r in records if r.get("event") == "start")
rates = [r["img_per_s"] for r in records if "img_per_s" in r]
# The first windows include worker start-up and CUDA warm-up.
rates = rates[2:] or rates
rate = statistics.median(rates)
steps = int(rate * float(sys.argv[2]) / batch)
print(f"probe: {rate:.0f} images/s at batch {batch}; {steps} steps fit {sys.argv[2]} s", file=sys.stderr)
print(max(steps, 1))
EOF
)
echo "training $config for $steps steps"
rc=0
timeout --signal=TERM "$((left + reserve / 2))" python3 "$root/train.py" --config "$config" --steps "$steps" --run-dir "$run_dir" \
    --no-progress --workers "$workers" "$@" 2>&1 | tee "$out/train.log" || rc=$?
echo "train.py exit status $rc after $(($(date +%s) - started)) s"

cp "$run_dir/metrics.jsonl" "$out/metrics.jsonl"
for name in best last; do
    if [ -f "$run_dir/$name.pt" ]; then
        python3 -m captcha_stream slim "$run_dir/$name.pt" "$out/$name-slim.pt"
    fi
done
