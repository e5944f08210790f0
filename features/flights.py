"""Derived features of the flights demo: yours to change.

`derive` receives input rows (the columns of `products/flights/data/features.json`, as a
request or a batch file carries them) and returns the columns the models see, one row per
input row. It runs as the first step of every fitted model, so the score task and the service
compute these from the raw columns. Editing this file retrains every candidate at the next
build; a registered model keeps the code it was trained with. docs/customizing.md has recipes.
"""

import pandas as pd

#: Input columns the models see as they are.
AS_THEY_ARE = ["distance", "temp", "dewp", "humid", "wind_speed", "wind_gust", "precip",
               "pressure", "visib"]  # fmt: skip


def derive(rows: pd.DataFrame) -> pd.DataFrame:
    scheduled = pd.to_datetime(rows[["year", "month", "day"]], errors="coerce")
    return pd.DataFrame(
        {
            "sched_dep_hour": rows["sched_dep_time"] // 100,  # 1530 -> 15
            "sched_arr_hour": rows["sched_arr_time"] // 100,
            **{col: rows[col] for col in AS_THEY_ARE},
            "plane_age": rows["year"] - rows["plane_year"],
            "seats": rows["seats"],
            "engines": rows["engines"],
            "carrier": rows["carrier"],
            "origin": rows["origin"],
            "dest": rows["dest"],
            "day_of_week": scheduled.dt.day_name().str[:3],  # Mon ... Sun
        },
        index=rows.index,
    )
