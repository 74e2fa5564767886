#!/bin/bash
# Ingest into a full 1M index vs an empty one: a new slice of the 1m city (400 residents
# after the 23,000 of `python -m bench.run --size 1m`, 18,232 results) loaded into a fresh
# SQLite database and into bench/out/data-1m/bulk.db, which that run loaded through the real
# bulk path. Run it after that run; it adds the slice to bulk.db.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
P=bench/out/probe2-1m
[ -f $P/city.json ] || python -c "
from pathlib import Path; from bench.city import generate
generate(Path('$P'), patients=400, hospitals=60, first=23000+200, hl7=False)"
rm -f bench/out/probe2-empty.db*
python -m bench.loads --db sqlite:///bench/out/probe2-empty.db --out bench/out/probe2-empty.json \
  --workers 1 ndjson $P/fhir/*.ndjson
python -m bench.loads --db sqlite:///bench/out/data-1m/bulk.db --out bench/out/probe2-full.json \
  --workers 1 ndjson $P/fhir/*.ndjson
for f in bench/out/probe2-empty.json bench/out/probe2-full.json; do
  python -c "
import json; d = json.load(open('$f'))
print('$f', d['results'], 'results in', round(d['seconds'], 1), 's:', round(d['results_per_s']), '/s')"
done
