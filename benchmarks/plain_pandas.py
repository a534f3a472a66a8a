"""Plain pandas: the same headline counts and age figures as the floor, reading every row
into memory. Usage: python benchmarks/plain_pandas.py FOLDER"""

import json
import sys

import pandas as pd
from headline_codes import RISK_DX, RISK_RX

folder = sys.argv[1]
idx = pd.Timestamp("2015-12-31")
p = pd.read_parquet(
    f"{folder}/patients.parquet",
    columns=["patient_id", "sex", "birth_date", "registered_from", "registered_to"],
)
# the population: registered in the window, born by the index date
reg_to = pd.to_datetime(p["registered_to"])
p = p[
    (pd.to_datetime(p["registered_from"]) <= idx)
    & (reg_to.isna() | (reg_to >= "2006-01-01"))
    & (pd.to_datetime(p["birth_date"]) <= idx)
]
b = pd.to_datetime(p["birth_date"])
p["age"] = idx.year - b.dt.year - ((b.dt.month * 100 + b.dt.day) > 1231).astype(int)
pe = pd.read_parquet(f"{folder}/pain_episodes.parquet")
d = pd.to_datetime(pe["date"])
q = pe[
    pe["site"].isin(["hip", "neck", "back", "knee"])
    & (pe["cause"] == "osteoarticular")
    & (pe["severity"] >= 4)
    & (d >= "2006-01-01")
    & (d <= idx)
]
nq = q.groupby("patient_id").size()
dx = pd.read_parquet(f"{folder}/diagnoses.parquet")
dx = dx[
    (pd.to_datetime(dx["date"]) <= idx)
    & dx["code"].str.replace(".", "", regex=False).str.startswith(RISK_DX)
]
rx = pd.read_parquet(f"{folder}/prescriptions.parquet")
rx = rx[(pd.to_datetime(rx["date"]) <= idx) & rx["atc_code"].str.startswith(RISK_RX)]
p["n_q"] = p["patient_id"].map(nq).fillna(0)
p["cond"] = p["patient_id"].isin(dx["patient_id"])
p["drug"] = p["patient_id"].isin(rx["patient_id"])
pain = p[p["n_q"] >= 1]
target = pain[(pain["n_q"] >= 2) & (pain["age"] >= 75) & (pain["cond"] | pain["drug"])]
print(
    json.dumps(
        {
            "population": len(p),
            "pain": len(pain),
            "pain_risk": int(pain["cond"].sum()),
            "target": len(target),
            "age_mean": p["age"].mean(),
            "age_sd": p["age"].std(),
            "pain_age_mean": pain["age"].mean(),
            "female": int((p["sex"] == "F").sum()),
        }
    )
)
