#!/usr/bin/env python3
"""The vital-signs view (views/vital_signs.json) as DuckDB SQL over the same NDJSON file,
into Parquet: the comparison figure for PERFORMANCE.md. Benchmark only (DuckDB from PyPI):

    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install duckdb
    /tmp/bench-venv/bin/python crates/epic-fhir-views/examples/duckdb_vital_signs.py \
        /tmp/views-bench/Observation.ndjson [THREADS]

Prints wall time, CPU time (user + system of this process) and peak RSS as JSON.
"""
import json
import os
import resource
import sys
import tempfile
import time

import duckdb

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
out = os.path.join(tempfile.mkdtemp(prefix="duckdb-bench-"), "vital_signs.parquet")

LOINC = "'http://loinc.org'"
SQL = f"""
COPY (
  WITH obs AS (
    SELECT * FROM read_ndjson('{path}', maximum_object_size = 67108864)
    WHERE list_contains(flatten(list_transform(category, lambda c: list_transform(c.coding, lambda d: d.code))), 'vital-signs')
  ),
  base AS (
    SELECT id,
           split_part(subject.reference, '/', 2) AS patient_id,
           split_part(encounter.reference, '/', 2) AS encounter_id,
           status,
           effectiveDateTime AS effective,
           issued,
           list_filter(code.coding, lambda c: c.system = {LOINC})[1].code AS panel_code,
           code, valueQuantity, component
    FROM obs
  )
  SELECT id, patient_id, encounter_id, status, effective, issued, panel_code,
         list_filter(code.coding, lambda c: c.system = {LOINC})[1].code AS code,
         list_filter(code.coding, lambda c: c.system = {LOINC})[1].display AS display,
         valueQuantity.value AS value,
         coalesce(valueQuantity.code, valueQuantity.unit) AS unit
  FROM base WHERE component IS NULL OR len(component) = 0
  UNION ALL
  SELECT id, patient_id, encounter_id, status, effective, issued, panel_code,
         list_filter(comp.code.coding, lambda c: c.system = {LOINC})[1].code,
         list_filter(comp.code.coding, lambda c: c.system = {LOINC})[1].display,
         comp.valueQuantity.value,
         coalesce(comp.valueQuantity.code, comp.valueQuantity.unit)
  FROM (SELECT *, unnest(component) AS comp FROM base WHERE len(component) > 0)
) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
"""

con = duckdb.connect()
con.execute(f"SET threads = {threads}")
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
con.execute(SQL)
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
size = os.path.getsize(path)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({
    "duckdb": duckdb.__version__,
    "threads": threads,
    "input_bytes": size,
    "rows": rows,
    "wall_seconds": wall,
    "cpu_seconds": cpu,
    "mb_per_second_wall": size / 1e6 / wall,
    "mb_per_cpu_second": size / 1e6 / cpu,
    "peak_rss_mib": after.ru_maxrss / 1024,
}, indent=2))
