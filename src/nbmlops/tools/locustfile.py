"""The load of `make load`, for locust: one record per request at a fixed rate per user.

Set by `nbmlops.tools.loadtest` through the environment: NBMLOPS_LOAD_PAYLOAD (a JSON file holding a
list of records), NBMLOPS_LOAD_FORMAT ("nbmlops" for /predict, "mlflow" for `mlflow models
serve`'s /invocations, "health" for GET /health: what locust itself costs), NBMLOPS_LOAD_RATE
(requests per second per user) and, for the fallback drill, NBMLOPS_LOAD_EXPECT_ROLE: an answer
from any other role counts as a failure.
"""

import json
import os
from itertools import cycle

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from nbmlops.tools.openloop import FORMATS, request_bodies

RECORDS = json.loads(open(os.environ["NBMLOPS_LOAD_PAYLOAD"], encoding="utf-8").read())
FORMAT = os.environ.get("NBMLOPS_LOAD_FORMAT", "nbmlops")
METHOD, PATH, _ = FORMATS[FORMAT]
EXPECT_ROLE = os.environ.get("NBMLOPS_LOAD_EXPECT_ROLE")
BODIES = request_bodies(RECORDS, FORMAT)


class Client(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("NBMLOPS_LOAD_RATE", "10")))

    def on_start(self):
        self.bodies = cycle(BODIES)

    @task
    def predict(self):
        if METHOD == "GET":
            self.client.get(PATH, name=PATH)
            return
        headers = {"Content-Type": "application/json"}
        with self.client.post(PATH, data=next(self.bodies), headers=headers,
                              catch_response=True, name=PATH) as answer:  # fmt: skip
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}: {answer.text[:200]}")
            elif EXPECT_ROLE and answer.json().get("role") != EXPECT_ROLE:
                answer.failure(f"answered by {answer.json().get('role')}, not {EXPECT_ROLE}")
