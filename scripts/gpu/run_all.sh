#!/usr/bin/env bash
# The accelerator session in one command: install, build, then the GPU step benchmark (issue 19.1),
# the teacher recipes (19.2) and the seeded ablation (18) side by side, each under its own time cap.
#
#   OUT=/some/dir bash scripts/gpu/run_all.sh            # on the GPU machine (about 9 minutes)
#   OUT=/tmp/gpu-smoke bash scripts/gpu/run_all.sh --smoke   # CPU check of every path, tiny sizes
#
# Wheels missing on the machine are installed from .whl/ if present.  Results: $OUT/results.tar.gz
# (JSON, curves, logs), $OUT/summary.txt, and the best teacher's fp16 weights in two files
# (teacher-best-embedding / teacher-best-rest .safetensors, + teacher-best-config.json).
# Turn them into markdown + PNGs with: python benchmarks/gpu_report.py DIR (DIR holding those files).
set -u
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:?set OUT to the folder that receives the results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1
WORK=$(mktemp -d); RES=$WORK/results; LOGS=$RES/logs; mkdir -p "$LOGS"
START=$(date +%s)
note() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOGS/run_all.log"; }

pack() {  # everything gathered so far, also when a part ran over its cap
  note "packing"
  if [ -n "${BEST:-}" ] && [ -f "$BEST" ]; then  # files come back up to 16 MB: the token embedding apart
    cp "${BEST%/*}/best-config.json" "$OUT/teacher-best-config.json"
    $PY -c 'import sys
from safetensors.numpy import load_file, save_file
state = load_file(sys.argv[1])
embedding = {k: v for k, v in state.items() if k == "token_embedding.weight"}
save_file(embedding, sys.argv[2] + "/teacher-best-embedding.safetensors")
save_file({k: v for k, v in state.items() if k not in embedding}, sys.argv[2] + "/teacher-best-rest.safetensors")' "$BEST" "$OUT"
  fi
  grep -h "" "$LOGS"/summary-*.txt > "$OUT/summary.txt" 2>/dev/null
  tar -czf "$OUT/results.tar.gz" -C "$WORK" results
}
trap pack EXIT
trap "exit 143" TERM INT

# cmake and ninja as pip installs them: their scripts folder, where the build backend looks for them
TOOLS=$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
CMAKE_DIR=$($PY -c 'import cmake; print(cmake.CMAKE_BIN_DIR)' 2>/dev/null)
export PATH="${CMAKE_DIR:+$CMAKE_DIR:}${TOOLS:+$TOOLS:}$PATH"

# ---- 1. wheels and our package (the build falls back to the sources: training needs no kernels)
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install --no-deps --no-index --target "$WORK/site" .whl/*.whl > "$LOGS/install.log" 2>&1 \
    || note "wheel install failed (see logs/install.log)"
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ $SMOKE = 0 ]; then
  if timeout --foreground 180 $PY -m pip install --no-build-isolation --no-deps --no-index --target "$WORK/pkg" . >> "$LOGS/install.log" 2>&1; then
    export PYTHONPATH="$WORK/pkg:$PYTHONPATH"
  else
    note "package build failed or timed out; using src/"; export PYTHONPATH="$PWD/src:$PYTHONPATH"
  fi
fi
$PY -c "import ternaryclip, open_clip, torch; print(ternaryclip.__file__, open_clip.__version__, torch.__version__, torch.cuda.is_available())" >> "$LOGS/install.log" 2>&1 \
  || { note "imports fail: $(tail -1 "$LOGS/install.log")"; exit 1; }
nvidia-smi > "$LOGS/nvidia-smi.txt" 2>&1
note "installed"

# ---- 2. the parts, in parallel
if [ $SMOKE = 1 ]; then
  A_CAP=900; B_CAP=900; C_CAP=900; TL=60; SEEDS="0 1"; SHARDS=1; RECIPES="patch4-colourfree"; FLAG=--smoke; CLI_STEPS=2; CLI_CAP=900; CLI_ARGS="--teacher bundled --batch-size 8"
else
  A_CAP=200; B_CAP=330; C_CAP=330; TL=265; SEEDS="0 1 2 3 4"; SHARDS=3; FLAG=
  RECIPES="base patch4 colourfree patch4-colourfree wide-patch4-colourfree"
  CLI_STEPS=25; CLI_CAP=110; CLI_ARGS="--teacher ViT-B-16 --batch-size 256 --workers 8"
fi

( # a: step time on the GPU, then a real `ternaryclip distill` run with the 224 px data pipeline
  timeout --foreground $A_CAP $PY scripts/gpu/step_bench.py $FLAG --threads 2 --json "$RES/a_step.json" > "$LOGS/a_step.log" 2>&1
  echo "a_step rc=$?" >> "$LOGS/rc.txt"
  timeout --foreground $CLI_CAP $PY -m ternaryclip distill $CLI_ARGS --precision fp16 --steps $CLI_STEPS --log-every 1 --save-every 100000 \
    --no-progress --fused-adamw --out "$WORK/a_cli" > "$LOGS/a_cli.log" 2>&1
  echo "a_cli rc=$?" >> "$LOGS/rc.txt"; cp "$WORK/a_cli/metrics.jsonl" "$RES/a_cli_metrics.jsonl" 2>/dev/null
  grep -h "" "$LOGS/a_step.log" | grep -E "batch|no batch|Error" > "$LOGS/summary-a.txt"
) &
for r in $RECIPES; do ( # b: teacher recipes
  timeout --foreground $B_CAP $PY scripts/train_teacher.py --recipe "$r" $FLAG --time-limit $TL --threads 1 --workers 2 \
    --out "$WORK/teacher-$r" > "$LOGS/b_$r.log" 2>&1
  echo "b_$r rc=$?" >> "$LOGS/rc.txt"; mkdir -p "$RES/teacher-$r"
  cp "$WORK/teacher-$r"/{curve.json,summary.json,best-metrics.json,synth-clip-variant.json} "$RES/teacher-$r/" 2>/dev/null
  tail -1 "$LOGS/b_$r.log" > "$LOGS/summary-b-$r.txt"
) & done
for i in $(seq 0 $((SHARDS - 1))); do ( # c: seeded ablation, sharded
  timeout --foreground $C_CAP $PY benchmarks/distill_seeds.py $FLAG --seeds $SEEDS --shard $i/$SHARDS --threads 1 --workers 2 \
    --json "$RES/c_seeds_$i.json" > "$LOGS/c_seeds_$i.log" 2>&1
  echo "c_seeds_$i rc=$?" >> "$LOGS/rc.txt"
) & done
wait
note "parts done: $(tr '\n' ' ' < "$LOGS/rc.txt")"
BEST=$($PY -c 'import json, pathlib, sys
runs = [(json.loads(p.read_text())["zeroshot/shape/acc1"], str(p.parent)) for p in pathlib.Path(sys.argv[1]).glob("teacher-*/best-metrics.json")]
print(max(runs)[1] + "/best.safetensors" if runs else "")' "$WORK")
note "best teacher: $BEST"
