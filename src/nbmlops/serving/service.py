"""`make serve`: the registry's models behind one HTTP endpoint, in the rendezvous style.

    nbmlops-serve --env env.ci.yaml [--port 8000] [--no-shadow] [--drill-latency-ms 200]
                  [--drill-canary-ms 100]

`POST /predict` takes one record or a list, checked against the request contract (422 naming
each bad field). The champion answers within `latency_budget_ms`, or the fallback does and the
answer says why; shadows (the challenger by default) score the same records in a separate
process; every record is archived. `GET /health`, `/ready`, `/models` and `/metrics`
(Prometheus text). Settings come from the env file's `serving` block.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from ..data import contract as dc
from ..errors import ConfigError, PipelineError
from ..layout import Layout
from ..records import new_request_id
from ..registry.store import Store
from ..settings import ServingSettings
from ..spec import FeatureSpec
from .archive import ArchiveSettings
from .canary import Canary
from .connection import with_deadline
from .feedback import Feedback, items_of
from .guard import Guard, redact_uri, without_paths
from .metrics import Metrics
from .payload import InvalidRequest, RequestContract
from .rendezvous import CANARY, CANARY_MISSED, CHAMPION, Breaker, ModelSet, NoModel, Router, Watcher
from .shadow import ShadowProcess

CHECK_ROWS = 64
#: Bodies up to this size are parsed on the event loop; larger ones in a thread.
PARSE_ON_LOOP_BYTES = 64 * 1024
#: uvicorn's limits: seconds to finish requests in flight on stop, connections at once, idle
#: keep-alive seconds.
GRACE_SECONDS, MAX_CONNECTIONS, IDLE_SECONDS = 5, 1000, 5
#: Seconds without a report from the shadow and archive process before it is restarted.
STUCK_SECONDS = 15.0
#: Seconds it may take to start (imports, opening the archive, loading the shadow models).
START_SECONDS = 120.0


class Service:
    """Router, registry watcher, shadow process and metrics: started and stopped together."""

    def __init__(self, store: Store, spec: FeatureSpec, contract: dict | None,
                 settings: ServingSettings, drill_latency_ms: float = 0.0,
                 sample: list[dict] | None = None, drill_canary_ms: float = 0.0):  # fmt: skip
        self.store, self.settings = store, settings
        key = settings.experiment.key if settings.experiment else None
        self.contract = RequestContract(spec, contract, settings.max_text_chars, key)
        self.token = os.environ.get(settings.token_env) or None
        self.metrics = Metrics()
        experiment = settings.experiment
        self.canary = Canary(experiment, settings.archive) if experiment else None
        timed = self.canary.waited if self.canary else lambda arm, ms, version: None
        if self.canary:  # read when /metrics is, so a rollback shows at once
            self.metrics.canary_share.set_function(lambda: self.canary.share)
        self.router = Router(self.contract.frame, spec.columns, settings.latency_budget_ms,
                             settings.fallback_reserve_ms,
                             Breaker(settings.breaker_failures, settings.breaker_cooldown_seconds),
                             champion_delay_ms=drill_latency_ms, canary_delay_ms=drill_canary_ms,
                             fallback_deadline_ms=settings.fallback_deadline_ms,
                             on_wait=timed)  # fmt: skip
        self.watcher = Watcher(store, self.router, list(settings.shadows), settings.poll_seconds,
                               on_swap=self._swapped,
                               on_error=lambda e: self.metrics.registry_errors.inc(),
                               sample=self.contract.frame(sample) if sample else None,
                               canary_alias=experiment.alias if experiment else None)  # fmt: skip
        self._archive = ArchiveSettings(settings.archive, settings.rotate_rows,
                                        settings.rotate_seconds,
                                        settings.archive_sync_seconds)  # fmt: skip
        self._spec, self._sample = spec.to_dict(), sample or []
        self.shadow = self._shadow_process()
        self.feedback = Feedback(settings.archive)
        self.drill_latency_ms, self.drill_canary_ms = drill_latency_ms, drill_canary_ms
        self.started = time.time()
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._pump_reports, name="metrics", daemon=True)
        self._judge = threading.Thread(target=self._judge_canary, name="experiment", daemon=True)

    def start(self) -> None:
        # Libraries and models are hundreds of thousands of long-lived objects; a full collection
        # walking them all stalls every request for a few hundred milliseconds. Keep them out of
        # collections (again after each swap), and collect the young ones less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.shadow.start()
        self.watcher.start()
        self._pump.start()
        if self.canary:
            self._judge.start()

    def stop(self) -> None:
        self._stop.set()
        self._pump.join(5)
        if self._judge.is_alive():
            self._judge.join(5)
        self.watcher.stop()
        for report in self.shadow.stop():
            self.metrics.take(report)
        self.metrics.archive_dropped.inc(max(0, self.shadow.unaccounted()))
        self.router.close()

    def _shadow_process(self) -> ShadowProcess:
        return ShadowProcess(self.store, self._spec, self._archive, self.settings.shadow,
                             self._sample, self.settings.shadows)  # fmt: skip

    def _restart_shadow(self, cause: str) -> None:
        """A new shadow and archive process for one that died or stopped reporting; the
        records the old one never accounted for are counted as dropped. The new process
        compacts what the old one left on disk."""
        old, self.shadow = self.shadow, self._shadow_process()
        self.shadow.start()
        if old.alive():
            old.process.kill()
        old.process.join(5)
        time.sleep(0.05)  # a request that took the old process just before the swap
        for report in old.reports():
            self.metrics.take(report)
        self.metrics.archive_dropped.inc(max(0, old.unaccounted()))
        self.metrics.shadow_restarts.labels(cause).inc()

    def _swapped(self, models: ModelSet) -> None:
        gc.freeze()  # the new models are long-lived too
        if self.canary:
            champion = models.answering.version if models.role == CHAMPION else None
            self.canary.follow(champion, models.canary.version if models.canary else None)
        self.metrics.swapped(models)

    def _judge_canary(self) -> None:
        """The experiment's test on the labels so far, every `check_seconds`."""
        while not self._stop.wait(self.canary.settings.check_seconds):
            try:
                self.canary.check_labels()
                self.canary.last_error = None
            except Exception as exc:  # noqa: BLE001 - the test waits for readable files
                self.canary.last_error = without_paths(f"{type(exc).__name__}: {exc}")

    def _pump_reports(self) -> None:
        while not self._stop.wait(0.25):
            for report in self.shadow.reports():
                self.metrics.take(report)
            self.metrics.breaker_open.set(self.router.breaker.state != "closed")
            self.metrics.archive_backlog.set(self.shadow.backlog_bytes())
            if self.canary:
                self.canary.check_latency(self.router.deadline * 1000)
            if not self.shadow.alive():
                self._restart_shadow("stopped")
            elif time.monotonic() - self.shadow.heard > (
                STUCK_SECONDS if self.shadow.started else START_SECONDS
            ):
                self._restart_shadow("stuck")

    def ready(self, away: str | None = None) -> tuple[bool, str]:
        """Whether the service answers, and why (not). A registry that cannot be reached
        (`away`: why, as the watcher says) does not make it unready: it answers with the
        models it loaded, and says so."""
        if self.router.models is None:
            return False, without_paths(self.watcher.last_error) or "loading models"
        if not self.shadow.alive():
            return False, "the shadow and archive process has stopped; it is being restarted"
        if not self.shadow.started:
            return False, "the shadow and archive process is starting"
        if self.shadow.error:
            return False, without_paths(self.shadow.error)
        if away is not None:
            loaded = ", ".join(f"{role} v{v}" for role, v in self.router.models.versions().items()
                               if v)  # fmt: skip
            return True, (f"ready; the registry is unreachable ({without_paths(away)}): "
                          f"answering with the models loaded ({loaded}); its aliases are read "
                          "again as soon as it answers")  # fmt: skip
        return True, "ready"

    def describe(self) -> dict:
        models = self.router.models
        away = self.watcher.unreachable()
        return {
            "model_name": self.store.model_name,
            "registry": redact_uri(self.store.tracking_uri),
            "serving": models.versions() if models else {},
            "scoring": models.forms() if models else {},
            "generation": models.generation if models else 0,
            "swaps": self.watcher.swaps,
            "last_registry_poll": self.watcher.last_poll,
            "registry_reachable": away is None,
            "registry_error": without_paths(away or self.watcher.last_error),
            "breaker": self.router.breaker.state,
            "latency_budget_ms": self.settings.latency_budget_ms,
            "champion_deadline_ms": round(self.router.deadline * 1000, 3),
            "drill_latency_ms": self.drill_latency_ms,
            "drill_canary_ms": self.drill_canary_ms,
            "shadow_scoring": self.settings.shadow,
            "archive": Path(self.settings.archive).name,
            "fields": [f.name for f in self.contract.fields],
        } | ({"experiment": self.canary.describe()} if self.canary else {})

    async def predict(self, body: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one /predict request."""
        start = time.perf_counter()
        if self.shadow.backlog_bytes() + len(body) > self.settings.archive_backlog_mb * 2**20:
            self.metrics.requests.labels("shed").inc()  # refused: it could not be kept
            return 503, {"detail": "the request archive is behind; try again shortly"}
        try:
            if len(body) > PARSE_ON_LOOP_BYTES:  # a large body is parsed off the event loop
                records, many = await asyncio.to_thread(self.contract.records, body)
            else:
                records, many = self.contract.records(body)
        except InvalidRequest as exc:
            self.metrics.requests.labels("invalid").inc()
            return 422, {"detail": exc.problems}
        keys = self.contract.key_values(records)  # a key of the experiment's own: not the models'
        arms, pair = (self.canary.assign(records, keys) if self.canary else
                      ([False] * len(records), None))  # fmt: skip
        groups = [[i for i, a in enumerate(arms) if a == flag] for flag in (False, True)]
        groups = [(g, flag) for g, flag in zip(groups, (False, True), strict=True) if g]
        try:
            answers = await asyncio.gather(*(
                self.router.answer(records if len(groups) == 1 else [records[i] for i in g],
                                   canary=flag) for g, flag in groups))  # fmt: skip
        except NoModel as exc:
            self.metrics.requests.labels("unavailable").inc()
            return 503, {"detail": str(exc)}
        request_id, received = new_request_id(), time.time()
        results: list[dict] = [{} for _ in records]
        kept = True
        m = self.metrics
        for (group, flag), answer in zip(groups, answers, strict=True):
            # a swap between the draw and the answer: the canary's records answered by no
            # canary, or by another version than the pair names, belong to no experiment
            other = answer.role == CANARY and pair is not None and answer.version != pair[1]
            moved = flag and (answer.arm != CANARY or other)
            mine = [records[i] for i in group] if len(groups) > 1 else records
            if keys is not None:  # the archive keeps the key, for the test's units
                mine = [r | {self.contract.key: keys[i]} for r, i in zip(mine, group, strict=True)]
            message = {"request_id": request_id, "received_at": received, "records": mine,
                       "indices": group, "proba": answer.proba.tolist(),
                       "version": answer.version, "role": answer.role, "arm": answer.arm,
                       "threshold": answer.threshold, "model_ms": answer.model_ms,
                       "batch_rows": answer.batch_rows, "reason": answer.reason,
                       "shadows": answer.shadows,
                       "experiment": None if moved else pair}  # fmt: skip
            if not self.shadow.send(message, len(body) * len(group) // len(records)):
                kept = False
                m.shadow_dropped.inc()
                m.archive_dropped.inc(len(group))
            m.answers.labels(answer.role, answer.version).inc()
            m.model_latency.labels(answer.role).observe(answer.model_ms / 1000)
            if answer.cause == CANARY_MISSED:
                m.canary_misses.inc()
            elif answer.cause:
                m.fallbacks.labels(answer.cause).inc()
            for i, p in zip(group, answer.proba, strict=True):
                results[i] = {"prediction": int(p >= answer.threshold),
                              "probability": round(float(p), 6)}  # fmt: skip
                if len(groups) > 1:
                    results[i] |= {"model_version": answer.version, "role": answer.role,
                                   "arm": answer.arm, "fallback_reason": answer.reason}  # fmt: skip
        if kept:
            self.feedback.answered(request_id, len(records))  # labels join archived records
        m.requests.labels("ok").inc()
        m.records.inc(len(records))
        first = answers[0]
        out = {"request_id": request_id, "model_version": first.version, "role": first.role,
               "fallback_reason": first.reason}  # fmt: skip
        if len(answers) > 1:  # each record names its own model and arm
            out |= {"model_version": None, "role": "experiment", "fallback_reason": None}
        elif self.canary:  # an experiment is declared: the arm, "champion" while it is off
            out["arm"] = first.arm
        out |= {"predictions": results} if many else results[0]
        m.latency.observe(time.perf_counter() - start)
        return 200, out


async def feedback(service: Service, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON body) for one /feedback request: every item's own answer."""
    try:
        items = items_of(body)
    except (ValueError, UnicodeDecodeError):
        service.metrics.labels.labels("invalid").inc()
        return 422, {"detail": "send JSON: one {\"request_id\": ..., \"outcome\": 0 or 1}, "
                               "a list of them, or {\"labels\": [...]}"}  # fmt: skip
    try:
        results, counts = await asyncio.to_thread(service.feedback.take, items)
    except OSError as exc:  # nothing was recorded: the sender may send it all again
        service.metrics.labels.labels("unwritable").inc(len(items))
        return 503, {"detail": f"the labels file cannot be written ({exc.strerror or exc}); "
                               "nothing was recorded, send them again later"}  # fmt: skip
    for status, n in counts.items():
        service.metrics.labels.labels(status).inc(n)
    return 200, {"accepted": counts.get("accepted", 0), "counts": dict(counts),
                 "results": results}  # fmt: skip


def create_app(service: Service):
    """The FastAPI app around a service; the service starts and stops with the app."""

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    hidden = {} if service.settings.docs else dict.fromkeys(("docs_url", "redoc_url",
                                                             "openapi_url"))  # fmt: skip
    app = FastAPI(title="nbmlops scoring service", lifespan=lifespan, **hidden)
    limit = service.settings.max_body_kb * 1024

    app.add_middleware(Guard, allowed_hosts=service.settings.allowed_hosts, token=service.token)

    @app.post("/predict")
    async def predict(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            service.metrics.requests.labels("invalid").inc()
            return JSONResponse({"detail": "send the records as application/json"},
                                status_code=415)  # fmt: skip
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(service, limit)
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return _too_large(service, limit)
        except ClientDisconnect:  # gone, or cut off for sending too slowly: nobody to answer
            return Response(status_code=400)
        status, out = await service.predict(bytes(body))
        return JSONResponse(out, status_code=status)

    @app.post("/feedback")
    async def post_feedback(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return JSONResponse({"detail": "send the labels as application/json"},
                                status_code=415)  # fmt: skip
        body = await request.body()
        if len(body) > limit:
            return _too_large(service, limit)
        status, out = await feedback(service, body)
        return JSONResponse(out, status_code=status)

    @app.get("/health")
    async def health():
        return {"status": "alive", "uptime_seconds": round(time.time() - service.started, 1)}

    @app.get("/ready")
    async def ready():
        away = service.watcher.unreachable()  # once: the reason and the field agree
        ok, why = service.ready(away)
        registry = "unreachable" if away else "reachable"
        return JSONResponse({"ready": ok, "reason": why, "registry": registry},
                            status_code=200 if ok else 503)  # fmt: skip

    @app.get("/models")
    async def models():
        return service.describe()

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _too_large(service: Service, limit: int) -> JSONResponse:
    """413 for a body over `limit` bytes, counted."""
    service.metrics.requests.labels("too_large").inc()
    return JSONResponse({"detail": f"body over {limit // 1024:,} KB (serving.max_body_kb)"},
                        status_code=413)  # fmt: skip


def service_from_env(
    env_file: str | Path,
    overrides: dict | None = None,
    drill_latency_ms: float = 0.0,
    drill_canary_ms: float = 0.0,
) -> Service:
    """A service on an env file's `mlflow`, `contract` and `serving` and the last build's spec."""
    layout = Layout.from_env(env_file)
    env, where = layout.env, str(env_file)
    project = Path(env_file).resolve().parent
    settings = ServingSettings.from_params((env.get("serving") or {}) | (overrides or {}), where)
    settings = replace(settings, archive=str(project / settings.archive))
    spec_file = layout.product("features", "spec")
    if not spec_file.is_file():
        raise ConfigError(f"{spec_file}: no feature spec; run a build first (make build)")
    spec = FeatureSpec.read(spec_file)
    contract = dc.load_contract(env.get("contract"))
    holdout = layout.product("ingest", "holdout")  # rows each loaded model is checked on
    sample = (RequestContract(spec).example(pd.read_parquet(holdout), CHECK_ROWS)
              if holdout.is_file() else None)  # fmt: skip
    store = Store.from_params(env["mlflow"], where).pinned_by(env.get("baseline"))
    return Service(store, spec, contract, settings, drill_latency_ms, sample, drill_canary_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="env.yaml", help="env file (default env.yaml)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--archive", help="folder of the request archive")
    parser.add_argument("--no-shadow", dest="shadow", action="store_false", default=None,
                        help="answer and archive only; no shadow scoring")  # fmt: skip
    parser.add_argument("--drill-latency-ms", type=float, default=0.0,
                        help="a drill: delay every champion answer by this much")  # fmt: skip
    parser.add_argument("--drill-canary-ms", type=float, default=0.0,
                        help="a drill: delay every canary answer by this much")  # fmt: skip
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "archive": args.archive,
                                   "shadow": args.shadow}.items() if v is not None}  # fmt: skip
    import uvicorn

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A registry that stops answering is waited on for seconds, not MLflow's minutes of
    # retries: the watcher says so and looks again at its next poll.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    try:
        service = service_from_env(args.env, overrides, args.drill_latency_ms,
                                   args.drill_canary_ms)  # fmt: skip
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = service.settings
    print(f"serving {service.store.model_name} on http://{s.host}:{s.port} (archive {s.archive})",
          flush=True)  # fmt: skip
    # Stopping waits at most GRACE_SECONDS for requests in flight (then the archive process
    # compacts what it holds); past MAX_CONNECTIONS, new connections get 503; an idle
    # keep-alive connection is closed after IDLE_SECONDS, and one whose request has not
    # arrived whole after request_read_seconds too.
    slow = service.metrics.requests.labels("slow")
    uvicorn.run(create_app(service), host=s.host, port=s.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=GRACE_SECONDS,
                limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=IDLE_SECONDS,
                http=with_deadline(s.request_read_seconds, slow.inc))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
