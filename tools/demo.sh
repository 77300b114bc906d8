#!/usr/bin/env bash
# What `make demo` runs: the toolkit's stages that exist today, on the embedded synthetic-motion
# data (and real clips when RESPIKE_REALDATA names them). Stops at the first failing stage.
set -euo pipefail
cli=$1; out=$2
mkdir -p "$out"
stage() { echo; echo "== $1"; }
fail() { echo "demo: stage '$1' failed" >&2; exit 1; }

stage "1/5 data: synthetic-motion clips -> key frames + residual frames ($out/data)"
"$cli" data inspect --synthetic 4 --out "$out/data" || fail data
if [ -n "${RESPIKE_REALDATA:-}" ] && [ -d "$RESPIKE_REALDATA/gestures" ]; then
  "$cli" data inspect "$RESPIKE_REALDATA/gestures" --out "$out/data" || fail data-real
else
  echo "(no real clips: set RESPIKE_REALDATA to a folder of videos to decode real footage)"
fi

for model in hybrid ann snn; do
  stage "2/5 train: tiny $model on synthetic-motion ($out/$model)"
  rm -rf "$out/$model"
  "$cli" train --config tiny --model "$model" --out "$out/$model" || fail "train $model"
done

stage "3/5 export: the hybrid's SNN branch to Lava netx ($out/hybrid-lava)"
rm -rf "$out/hybrid-lava"
"$cli" export "$out/hybrid" --out "$out/hybrid-lava" || fail export

stage "4/5 simulate: Lava (Loihi 2, fixed point) against PyTorch"
"$cli" simulate "$out/hybrid-lava" --clips 4 || fail simulate

stage "5/5 energy: not implemented yet (no energy figures are printed)"
echo
echo "Demo outputs in $out/: data strips (data/*.png), runs (hybrid, ann, snn), Lava export and verify.json."
