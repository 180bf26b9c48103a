#!/usr/bin/env bash
# GPU acceptance: what the first CUDA machine must show, in under 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh [--skip-install] [--skip-demo] [--with-tests]
#
# 1. the README's set-up (make install) and `make demo`, which must have taken torch's CUDA build;
# 2. `train` of every method preset for one epoch on cuda;
# 3. IW-NLL on cuda against the CPU's on the same weights (benchmarks/gpu_check.py's tolerance);
# 4. the training-step and IW-NLL benchmarks on the GPU (benchmarks/train_throughput.py);
# 5. a 4-trial sweep with --gpus-per-trial 0.25 against the same 4 trials one at a time;
# 6. with --with-tests, the whole suite (make test).
# On a machine without CUDA it runs 1 (and 6) and skips the rest with a line saying why;
# GPU_CHECK_DEVICE=cpu rehearses 2-5 on the CPU instead (no GPU shares), to check the script. It
# prints one table (check, result, seconds, detail), then the benchmark tables; logs go to
# $GPU_CHECK_DIR (default: a new temporary folder). Exit status 1 if a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=$REPO/.venv/bin/python
WORK=${GPU_CHECK_DIR:-$(mktemp -d -t gpu-check-XXXXXX)}
mkdir -p "$WORK"
SKIP_INSTALL=0 SKIP_DEMO=0 WITH_TESTS=0
for arg in "$@"; do
  case $arg in
    --skip-install) SKIP_INSTALL=1 ;;
    --skip-demo) SKIP_DEMO=1 ;;
    --with-tests) WITH_TESTS=1 ;;
    *) echo "usage: $0 [--skip-install] [--skip-demo] [--with-tests]" >&2; exit 2 ;;
  esac
done
DEVICE=${GPU_CHECK_DEVICE:-cuda}
ROWS=() FAILED=0 STAMP=$(date +%Y%m%d%H%M%S)

row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }

# check NAME DETAIL COMMAND...: run COMMAND, its output to $WORK/NAME.log, and add a row.
check() {
  local name=$1 detail=$2 start=$SECONDS
  shift 2
  if "$@" >"$WORK/$name.log" 2>&1; then
    row "$name" ok $((SECONDS - start)) "$detail"
  else
    row "$name" "**FAILED**" $((SECONDS - start)) "exit $?; see $WORK/$name.log"
    FAILED=1
  fi
}

skip() { row "$1" skipped - "$2"; }

if [ "$SKIP_INSTALL" = 1 ]; then skip install "--skip-install"; else check install "make install" make install; fi
if [ ! -x "$PY" ]; then
  echo "no $PY: run without --skip-install first" >&2
  exit 1
fi
TORCH=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
if [ "$DEVICE" = cpu ]; then
  CUDA=1 PACKED=0 SERIAL=0
  row cuda rehearsal - "GPU_CHECK_DEVICE=cpu: the CUDA checks below run on the CPU, without GPU shares"
elif "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  CUDA=1 PACKED=0.25 SERIAL=1
  row cuda ok - "torch $TORCH on $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
else
  CUDA=0
  NO_CUDA="no CUDA device: torch.cuda.is_available() is False (torch $TORCH)"
  row cuda skipped - "$NO_CUDA; the CUDA checks below are skipped"
fi

if [ "$SKIP_DEMO" = 1 ]; then skip demo "--skip-demo"; else
  check demo "make demo DEMO_NAME=gpu-check-$STAMP (device auto: cuda where there is one)" \
    make demo DEMO_NAME="gpu-check-$STAMP"
fi

TRAIN=(--epochs 1 --device "$DEVICE" --set data.synthetic_sentences=1000 --set data.batch_size=32 --set eval.iw_samples=20)
if [ "$CUDA" = 1 ]; then
  for method in $("$PY" -c 'import models; print(*models.PRESETS)'); do
    check "train-$method" "1 epoch on $DEVICE" "$PY" -m sweeps train --method "$method" "${TRAIN[@]}" \
      --out "$WORK/train/$method"
  done
  if "$PY" benchmarks/gpu_check.py "$WORK/train/vae/model.pt" "$DEVICE" >"$WORK/iw.log" 2>&1; then
    row iw-cuda-vs-cpu ok - "$(tail -1 "$WORK/iw.log")"
  else
    row iw-cuda-vs-cpu "**FAILED**" - "$(tail -1 "$WORK/iw.log"); see $WORK/iw.log"
    FAILED=1
  fi
  check benchmarks "benchmarks/train_throughput.py on $DEVICE: tables below" \
    "$PY" benchmarks/train_throughput.py --device "$DEVICE" --threads 1 --only train,iw --rounds 5 --iw-rounds 2
  SWEEP=("$REPO/tests/fixtures/cluster_space.yaml" --trials 4 --epochs 3 --cpus-per-trial 1
         --set data.synthetic_sentences=4000 --set eval.iw_samples=50)
  start=$SECONDS
  check sweep-4-on-one-gpu "4 trials at once, $PACKED GPU each" \
    bash -c 'cd "$0" && "$1" -m sweeps run "${@:2}"' "$WORK" "$PY" "${SWEEP[@]}" --name "pack-$STAMP" \
    --max-concurrent 4 --gpus-per-trial "$PACKED"
  packed=$((SECONDS - start)) start=$SECONDS
  check sweep-4-one-at-a-time "the same 4 trials, $SERIAL GPU each" \
    bash -c 'cd "$0" && "$1" -m sweeps run "${@:2}"' "$WORK" "$PY" "${SWEEP[@]}" --name "serial-$STAMP" \
    --max-concurrent 1 --gpus-per-trial "$SERIAL"
  serial=$((SECONDS - start))
  row "trials/hour, packed / one at a time" "$("$PY" -c "print(f'{$serial / max($packed, 1):.2f}x')")" - \
    "$serial s one at a time, $packed s packed (whole sweeps, Ray's start included)"
else
  skip "train every method on cuda" "$NO_CUDA"
  skip iw-cuda-vs-cpu "$NO_CUDA"
  skip benchmarks "$NO_CUDA"
  skip "4-trial sweep on one GPU" "$NO_CUDA"
fi
if [ "$WITH_TESTS" = 1 ]; then check tests "make test" make test; fi

echo
echo "GPU acceptance, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $(nproc) CPUs; torch $TORCH; logs in $WORK"
echo
echo "| check | result | seconds | detail |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ -f "$WORK/benchmarks.log" ]; then echo; grep -E '^(\||###|machine)' "$WORK/benchmarks.log"; fi
exit $FAILED
