"""DAG factory: one DAG ``retrain_<pipeline>`` per config file in configs/.

Parsed by the Airflow DAG processor (and by ``airflow dags test``). Parsing is cheap: it imports
``airflow.sdk`` and ``pipelines.config``/``pipelines.params`` (pydantic and yaml) only. Each task is
a few lines that call one function of :mod:`pipelines.flow`, which imports the heavy stack
(TensorFlow, Beam, TFT, TFMA, GX) inside the task process when the step runs.

wait_for_span >> ingest >> validate >> transform >> train >> evaluate >> is_blessed >> promote
>> report

When it runs (issue 12): on ``schedule.cron``, on a manual trigger, and on the
``<name>.retrain_requested`` Asset event a monitor alarm emits (``AssetOrTimeSchedule`` when
``monitoring.retrain_on_alarm``). The span: the ``span`` param, else the alarm's monitored span
(the event's extra), else the logical date; an alarm-started run logs and records in lineage
``triggered by monitor alarm: <reasons>`` (dag_support.run_span, pipelines.arrival).

Outcomes an operator sees:

- no data: the span's files did not land within ``schedule.arrival_timeout_minutes``
  (``wait_for_span`` waits in the triggerer, dag_support.WaitForSpan): a green run with
  ``wait_for_span`` and every task after it SKIPPED, the alert ``NO DATA: no data for span D after
  N min: no file matches <glob>``, lineage outcome ``no_data``; nothing trained or written.

- promoted: a green run; the report says ``PROMOTED as version N``.
- not blessed (the model did not pass the evaluation gates): a green run too, as the gates did their
  job and nothing needs fixing; ``promote`` is skipped and the report says ``NOT PROMOTED: not
  blessed`` with the failed gates (also in the ``is_blessed`` log and ``pipelines lineage runs``).
- blessed but refused at promote (infra check failed, production moved since the evaluation, the
  evaluation no longer binds the candidate): a FAILED run with an alert, since a model that should
  have shipped did not and someone must look. ``promote`` is skipped with the refusal, the report
  says ``BLESSED BUT REFUSED AT PROMOTION`` with the reasons, then the ``report`` task fails with
  those reasons, which the failure callback sends (one alert).
- any task failing: a failed run, and the failure callback sends the task's full error (bounded).
- ``promotion.policy: approval``: ``is_blessed >> approve >> promote`` (PromotionApproval); a
  rejection or no decision in time is a green run, ``promote`` skipped, the report says ``NOT
  PROMOTED: rejected by <user>`` or ``no decision within N h``; an approval promotes as above.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    Param,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

# dag_support.py sits beside this file: importable under any DAGs folder, in `airflow dags test`
# and in a DagBag pointed here (Airflow itself only puts its configured DAGs folder on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_support import (  # noqa: E402
    WaitForSpan,
    build_all,
    notify_failure,
    retrain_requested_asset,
    run_context,
    run_span,
)

from pipelines import flow  # noqa: E402
from pipelines.config import PipelineConfig, load_config
from pipelines.errors import NotPromoted, PipelineError
from pipelines.params import param_schemas
from pipelines.results import (
    Evaluated,
    Ingested,
    Promoted,
    Reported,
    Trained,
    Transformed,
    Validated,
)

log = logging.getLogger("pipelines.dag")

RETRY_FAST: dict[str, Any] = {"retries": 1, "retry_delay": dt.timedelta(seconds=20)}
# issue 13: the Celery stack routes the heavy tasks (transform, train, evaluate) to the workers of
# this queue (scripts/stack.sh, docker/compose.yaml); unset: Airflow's default queue.
HEAVY: dict[str, Any] = {"queue": q} if (q := os.environ.get("PIPELINES_HEAVY_QUEUE")) else {}
RETRY_BACKOFF: dict[str, Any] = {"retries": 3, "retry_delay": dt.timedelta(seconds=20),
                 "retry_exponential_backoff": 2.0, "max_retry_delay": dt.timedelta(minutes=10)}
REFUSAL_KEY = "refusal"  # XCom of promote when a blessed model is refused
DECISION_KEY = "decision"  # XCom of approve: the decision (a rejection skips, returning nothing)


class PromotionRefused(AirflowFailException):
    """The run's model was blessed but refused at promote: the run fails with the reasons."""


class PromotionApproval(ApprovalOperator):
    """Task ``approve`` (``promotion.policy: approval``): a person decides between is_blessed and
    promote, in Airflow's Required Actions page or through the REST API (PATCH .../hitlDetails).

    Before it waits, it renders the pre-decision audit report and shows the evaluation's verdict,
    reasons, metrics against production, gates and the report path (pipelines.approval.ask). On
    resume it records the decision in lineage (step ``approval``: who, when, comment) and pushes
    it (XCom key ``decision``) for the report; a retry acts on a recorded decision, never asks twice. Approve: promote runs. Reject: promote is skipped (the operator skips
    its direct downstream). No answer within ``approval_timeout_hours``: the scheduler applies the
    default, Reject, with nobody as responder, recorded as timed out. The run stays green either
    way; production is untouched.
    """

    def __init__(self, *, config_path: str, timeout_hours: float, **kwargs: Any) -> None:
        super().__init__(subject="Promote the candidate to production?", defaults=self.REJECT,
                         response_timeout=dt.timedelta(hours=timeout_hours), **kwargs)
        self.config_path, self.timeout_hours = config_path, timeout_hours

    def execute(self, context: Any) -> Any:
        from pipelines import approval
        from pipelines.context import utcnow

        evaluated = context["ti"].xcom_pull(task_ids="evaluate")
        done = approval.recorded(self.config_path, context["dag_run"].run_id, evaluated)
        if done is not None:  # a retry after the person decided: act on it, never ask twice
            log.info("decision already recorded for this run: %s", done["reason"])
            return self._conclude(context, done)
        self.subject, self.body, report_html = approval.ask(self.config_path, run_context(),
                                                            evaluated, utcnow())
        log.info("waiting for a decision; pre-decision audit report: %s", report_html)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from pipelines import approval

        decision = None
        if "error" not in event:  # recorded before the operator skips promote on a rejection
            user = event.get("responded_by_user")
            response = {"approved": list(event.get("chosen_options") or []) == [self.APPROVE],
                        "timed_out": bool(event.get("timedout")) or user is None,
                        "user": dict(user) if user else None, "at": event.get("responded_at"),
                        "comment": (event.get("params_input") or {}).get("comment")}
            evaluated = context["ti"].xcom_pull(task_ids="evaluate")
            decision = approval.record(self.config_path, run_context(), evaluated,
                                       approval.decide(response, self.timeout_hours))
            log.info("approval: %s", decision["reason"])
            context["ti"].xcom_push(key=DECISION_KEY, value=decision)
        super().execute_complete(context, event)  # on a rejection: skips promote, returns nothing
        return decision

    def _conclude(self, context: Any, decision: dict[str, Any]) -> dict[str, Any]:
        from pipelines import approval

        context["ti"].xcom_push(key=DECISION_KEY, value=decision)
        if approval.declined(decision):
            self.skip(ti=context["ti"], tasks=context["task"].get_direct_relatives(upstream=False))
        return decision


def _run_day(name: str) -> dt.date:
    """The run's span unless the ``span`` param names one: the triggering monitor alarm's span,
    else the logical date (dag_support.run_span; wait_for_span waited for the same span)."""
    span, request = run_span(get_current_context(), name)
    if request is not None:
        from pipelines.arrival import describe_trigger

        log.info("%s", describe_trigger(request))
    return span


def _gate(fn, *args):
    """Runs a flow function; an expected failure fails the task at once (no retry) in one line."""
    try:
        return fn(*args)
    except PipelineError as exc:
        raise AirflowFailException(str(exc)) from exc


def build_dag(config_path: Path):
    """Builds the retraining DAG of one pipeline config."""
    cfg: PipelineConfig = load_config(config_path)
    cfg_file = str(config_path)
    name = cfg.name
    snapshot = Asset(name=f"{name}.snapshot", uri=f"x-pipelines://{name}/snapshots")
    model = Asset(name=f"{name}.model", uri=f"x-pipelines://{name}/models")
    production = Asset(name=f"{name}.production", uri=f"x-pipelines://{name}/registry/production")
    params = {k: Param(s.pop("default"), description=s.pop("description"), **s)
              for k, s in param_schemas(cfg).items()}
    schedule: Any = cfg.schedule.cron
    if cfg.monitoring.retrain_on_alarm:  # issue 12: a monitor alarm's Asset event starts a run
        requested = retrain_requested_asset(name)
        if cfg.schedule.cron:
            from airflow.timetables.trigger import CronTriggerTimetable

            schedule = AssetOrTimeSchedule(
                timetable=CronTriggerTimetable(cfg.schedule.cron, timezone="UTC"),
                assets=requested)
        else:
            schedule = requested

    @dag(
        dag_id=f"retrain_{name}",
        schedule=schedule,
        start_date=dt.datetime.fromisoformat(cfg.schedule.start_date).replace(tzinfo=dt.UTC),
        catchup=cfg.schedule.catchup,
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(hours=3, minutes=cfg.schedule.arrival_timeout_minutes),
        doc_md=cfg.description or f"Retraining of {name}.",
        description=(cfg.description.strip().splitlines() or [f"Retraining of {name}"])[0][:200],
        tags=sorted({"retrain", *cfg.tags}),
        params=params,
        default_args={"owner": cfg.owner, "execution_timeout": dt.timedelta(minutes=30),
                      "on_failure_callback": notify_failure, **RETRY_FAST},
    )
    def retrain():
        @task(outlets=[snapshot], execution_timeout=dt.timedelta(minutes=20), **RETRY_BACKOFF)
        def ingest(*, outlet_events=None) -> Ingested:
            c = get_current_context()
            res = _gate(flow.ingest, cfg_file, run_context(), dict(c["params"]), _run_day(name))
            outlet_events[snapshot].extra = {k: res[k] for k in ("snapshot_id", "uri", "sha256",
                                                                   "spans", "rows", "golden_uri")}
            return res

        @task(inlets=[snapshot], execution_timeout=dt.timedelta(minutes=20))
        def validate(ingested: Ingested) -> Validated:
            return _gate(flow.validate, cfg_file, run_context(), ingested)

        @task(inlets=[snapshot], execution_timeout=dt.timedelta(minutes=45), **RETRY_BACKOFF,
              **HEAVY)
        def transform(ingested: Ingested, validated: Validated) -> Transformed:
            return _gate(flow.transform, cfg_file, run_context(), ingested)

        @task(outlets=[model], execution_timeout=dt.timedelta(minutes=45), **HEAVY)
        def train(transformed: Transformed, ingested: Ingested, *, outlet_events=None) -> Trained:
            res = _gate(flow.train, cfg_file, run_context(), transformed, ingested)
            outlet_events[model].extra = {"model_uri": res["model_uri"], "model_id": res["model_id"],
                                          "sha256": res["sha256"], "snapshot_uri": ingested["uri"],
                                          "transform_uri": transformed["transform_uri"]}
            return res

        @task(inlets=[model, snapshot], execution_timeout=dt.timedelta(minutes=45), **HEAVY)
        def evaluate(trained: Trained, ingested: Ingested) -> Evaluated:
            return _gate(flow.evaluate, cfg_file, run_context(), trained, ingested)

        @task.short_circuit(ignore_downstream_trigger_rules=False,
                            execution_timeout=dt.timedelta(minutes=5))
        def is_blessed(evaluated: Evaluated) -> bool:
            if not evaluated.get("blessed"):
                log.info("not promoted: %s", "; ".join(evaluated.get("reasons") or ["not blessed"]))
            return bool(evaluated.get("blessed"))

        # issue 12: under the shadow policy a promote that sets the `shadow` alias changes no
        # production, so the event goes through an alias and is emitted only when it did
        changes = AssetAlias(name=f"{name}.production_changes")
        shadowing = cfg.promotion.policy == "shadow"

        @task(inlets=[model], outlets=[changes] if shadowing else [production],
              execution_timeout=dt.timedelta(minutes=20))
        def promote(evaluated: Evaluated, *, outlet_events=None) -> Promoted:
            try:
                res = flow.promote(cfg_file, run_context(), evaluated)
            except NotPromoted as exc:
                # skipped, not failed: a skipped task emits no `production` asset event, and the
                # report (which must still be written) runs after it; the report fails the run
                result = getattr(exc, "result", None) or {}
                refusal = {"promoted": False, "version": None, "registry_uri": None,
                           "previous_version": result.get("previous_version"),
                           "infra_check": result.get("infra_check"),
                           "reasons": list(result.get("reasons") or [str(exc)])}
                get_current_context()["ti"].xcom_push(key=REFUSAL_KEY,
                                                      value=json.loads(json.dumps(refusal,
                                                                                  default=str)))
                log.warning("blessed model REFUSED at promotion: %s", exc)
                raise AirflowSkipException(f"REFUSED: {exc}") from exc
            except PipelineError as exc:
                raise AirflowFailException(str(exc)) from exc
            extra = {"version": res["version"], "registry_uri": res["registry_uri"],
                     "model_uri": evaluated["model_uri"],
                     "evaluation_uri": evaluated["evaluation_uri"]}
            if not shadowing:
                outlet_events[production].extra = extra
            elif res["promoted"]:  # the first model of a shadow pipeline: production changed
                outlet_events[changes].add(production, extra=extra)
            else:
                log.info("shadow: version %s is the shadow candidate; production unchanged",
                         res["version"])
            return res

        # min_one_success: skipped with the rest when the span never landed (no_data)
        @task(trigger_rule="none_failed_min_one_success", execution_timeout=dt.timedelta(minutes=15))
        def report(evaluated: Evaluated, promoted: Promoted | None) -> Reported:
            from pipelines import approval

            refusal = None
            decision = (get_current_context()["ti"].xcom_pull(task_ids="approve", key=DECISION_KEY)
                        if cfg.promotion.policy == "approval" else None)
            if promoted is None and evaluated.get("blessed") and not approval.declined(decision):
                refusal = get_current_context()["ti"].xcom_pull(task_ids="promote",
                                                                key=REFUSAL_KEY) or {
                    "promoted": False, "reasons": ["promote did not record why it did not "
                                                   "promote: see the promote task's log"]}
            res = _gate(flow.report, cfg_file, run_context(), evaluated,
                        approval.for_report(promoted or refusal, decision))
            log.info("audit report: %s", res["report_html"])
            if refusal is not None:
                raise PromotionRefused(
                    f"blessed model REFUSED at promotion, production unchanged: "
                    f"{'; '.join(refusal['reasons'])}\nreport: {res['report_html']}")
            return res

        # issue 12: data arrival (dag_support.WaitForSpan): on timeout it alerts "no data" and is
        # skipped, and every task after it with it
        waited = WaitForSpan(task_id="wait_for_span", config_path=cfg_file, pipeline=name,
                             timeout_minutes=cfg.schedule.arrival_timeout_minutes,
                             poke_seconds=cfg.schedule.arrival_poke_seconds,
                             execution_timeout=dt.timedelta(
                                 minutes=cfg.schedule.arrival_timeout_minutes + 10))
        ingested = ingest()
        waited >> ingested
        validated = validate(ingested)
        transformed = transform(ingested, validated)
        trained = train(transformed, ingested)
        evaluated = evaluate(trained, ingested)
        gate = is_blessed(evaluated)
        promoted = promote(evaluated)
        if cfg.promotion.policy == "approval":  # issue 12: a person decides before promote
            gate >> PromotionApproval(
                task_id="approve", config_path=cfg_file,
                timeout_hours=cfg.promotion.approval_timeout_hours,
                execution_timeout=dt.timedelta(minutes=15),  # the pre-decision report, not the wait
                params={"comment": Param("", type="string", description=(
                    "why (optional): recorded in lineage and the audit report"))}) >> promoted
        else:
            gate >> promoted
        report(evaluated, promoted)

    return retrain()


for _dag_id, _dag in build_all(build_dag).items():
    globals()[_dag_id] = _dag
