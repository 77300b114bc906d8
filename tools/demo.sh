#!/usr/bin/env bash
# What `make demo` runs. Today the toolkit's data stage is what exists: decode and decompose
# synthetic-motion clips and real clips, and draw their key/residual strips.
set -euo pipefail
cli=$1; out=$2
mkdir -p "$out"
echo "== data: synthetic-motion clips -> key frames + residual frames ($out/data)"
"$cli" data inspect --synthetic 4 --out "$out/data"
if [ -n "${RESPIKE_REALDATA:-}" ] && [ -d "$RESPIKE_REALDATA" ]; then
  echo
  echo "== data: real clips from $RESPIKE_REALDATA/gestures and /ucf101 ($out/data)"
  "$cli" data inspect "$RESPIKE_REALDATA/gestures" "$RESPIKE_REALDATA/ucf101" --out "$out/data"
else
  echo
  echo "== data: no real clips (set RESPIKE_REALDATA to a folder of videos to decode real footage)"
fi
echo
echo "Strips written to $out/data/*.png."
echo "Not in the demo yet: training, export to Lava, simulation and energy (not implemented yet)."
