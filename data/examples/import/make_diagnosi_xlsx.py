"""Write diagnosi.xlsx, the example's Excel source (native date cells, as an export from a
GP system holds them). Run: python data/examples/import/make_diagnosi_xlsx.py"""

import datetime as dt
from pathlib import Path

from openpyxl import Workbook

ROWS = [
    (1001, dt.date(2007, 9, 29), "401.9"),
    (1001, dt.date(2010, 3, 2), "250.00"),
    (1002, dt.date(2012, 6, 15), "531.9"),
    (1004, dt.date(2005, 1, 20), "428.0"),
    (1005, dt.date(2014, 11, 3), "493.90"),
]

wb = Workbook()
ws = wb.active
ws.title = "diagnosi"
ws.append(["ID_PAZ", "DATA", "ICD9"])
for row in ROWS:
    ws.append(row)
    ws.cell(ws.max_row, 2).number_format = "DD/MM/YYYY"
wb.properties.created = dt.datetime(2016, 1, 31)
wb.save(Path(__file__).with_name("diagnosi.xlsx"))
