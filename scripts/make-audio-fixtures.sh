#!/usr/bin/env bash
# Makes the spoken-dialogue WAV fixtures in test/fixtures/audio/ with festival's natural HTS voice
# (cmu_us_slt_arctic_hts) and sox: PCM16LE mono, 16 kHz, plus one line at 48 kHz for the
# resampler path. Peaks are normalised to -3 dBFS so every line has the same, ordinary level.
# Needs the Debian packages festival, festvox-us-slt-hts and sox. The output is committed; rerun
# only to change the lines.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in text2wave sox; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "make-audio-fixtures: '$tool' not found; install the Debian packages festival festvox-us-slt-hts sox" >&2
    exit 1
  fi
done

out=test/fixtures/audio
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name|sample rate|line
lines=(
  "provider-offer-16k|16000|I can fix the boiler for one hundred and twenty pounds."
  "client-deal-16k|16000|Deal, let's shake on it."
  "client-handshake-16k|16000|Handshake. One hundred and twenty pounds it is."
  "provider-parts-48k|48000|Two days of work, and forty pounds for parts."
  "provider-boiler-radiators-16k|16000|I would charge one hundred and twenty pounds for the boiler repair, and forty to eighty pounds for the radiators."
  "client-fair-handshake-16k|16000|That sounds fair. Handshake."
)

for entry in "${lines[@]}"; do
  IFS='|' read -r name rate text <<<"$entry"
  printf '%s\n' "$text" >"$work/$name.txt"
  text2wave -eval "(voice_cmu_us_slt_arctic_hts)" "$work/$name.txt" -o "$work/$name.wav"
  # -D: no dither, so reruns give identical files.
  sox -D "$work/$name.wav" -r "$rate" -c 1 -b 16 -e signed-integer "$out/$name.wav" gain -n -3
  echo "$out/$name.wav: $(soxi -D "$out/$name.wav") s at $rate Hz: $text"
done
du -ch "$out"/*.wav | tail -1
