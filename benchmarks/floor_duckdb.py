"""The floor: one hand-written DuckDB SQL query computing the four headline counts
(population, pain cohort, pain cohort with a risk condition, target subgroup; the
population registered in the window and born by the index date) over a
contract folder of Parquet files. Usage: python benchmarks/floor_duckdb.py FOLDER"""

import json
import sys

import duckdb
from headline_codes import RISK_DX, RISK_RX

folder = sys.argv[1]


def any_prefix(col, prefixes):
    return "(" + " OR ".join(f"starts_with({col}, '{p}')" for p in prefixes) + ")"


q = f"""
WITH p AS (
  SELECT patient_id,
         2015 - year(birth_date) - CASE WHEN strftime(birth_date, '%m%d') > '1231' THEN 1 ELSE 0
         END AS age
  FROM '{folder}/patients.parquet'
  -- the population: registered in the window, born by the index date
  WHERE registered_from <= DATE '2015-12-31'
    AND (registered_to IS NULL OR registered_to >= DATE '2006-01-01')
    AND birth_date <= DATE '2015-12-31'),
pe AS (
  SELECT patient_id, count(*) AS n_q FROM '{folder}/pain_episodes.parquet'
  WHERE site IN ('hip','neck','back','knee') AND cause = 'osteoarticular' AND severity >= 4
    AND date BETWEEN DATE '2006-01-01' AND DATE '2015-12-31'
  GROUP BY patient_id),
dx AS (
  SELECT DISTINCT patient_id FROM '{folder}/diagnoses.parquet'
  WHERE date <= DATE '2015-12-31' AND {any_prefix("replace(code, '.', '')", RISK_DX)}),
rx AS (
  SELECT DISTINCT patient_id FROM '{folder}/prescriptions.parquet'
  WHERE date <= DATE '2015-12-31' AND {any_prefix("atc_code", RISK_RX)})
SELECT count(*) AS population,
       count(pe.patient_id) AS pain,
       count(*) FILTER (WHERE pe.patient_id IS NOT NULL AND dx.patient_id IS NOT NULL) AS pain_risk,
       count(*) FILTER (WHERE pe.n_q >= 2 AND p.age >= 75 AND (dx.patient_id IS NOT NULL OR
       rx.patient_id IS NOT NULL)) AS target
FROM p LEFT JOIN pe USING (patient_id) LEFT JOIN dx USING (patient_id) LEFT JOIN rx USING
(patient_id)
"""
row = duckdb.sql(q).fetchone()
print(json.dumps(dict(zip(["population", "pain", "pain_risk", "target"], row, strict=True))))
