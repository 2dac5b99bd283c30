"""Step `train`: a Keras model on the transformed data, exported with the transform graph inside.

Called by ``runner.run_step("train", ...)`` (the CLI ``pipelines train`` and the DAG task). Writes::

    <home>/models/<pipeline>/<model_id>/
        saved_model/     the SavedModel: `serving_default` and `transform_features` signatures
        curves.json      per-epoch training and validation loss and the task's metrics
        curves.png       loss and the task's headline metric as a plot
        model.json       the step result

The head, loss, metrics and early stopping follow ``cfg.task`` (``pipelines.model.HEADS``):

    task        output layer          loss                   early stopping   metrics (eval_*)
    binary      1 sigmoid unit        binary cross-entropy   val_auc (max)    auc, accuracy
    multiclass  K softmax units       sparse categorical CE  val_loss (min)   accuracy, top2_accuracy
    regression  1 linear unit         mean squared error     val_loss (min)   rmse, mae

Regression targets are standardised inside the model: the network predicts a z-score and a fixed
``target_scale`` layer maps it back with the train split's label mean and std (computed here from
the transformed train data), so predictions, loss and metrics are in the label's own units.

Signatures (no Python from this repo is needed to serve):
    serving_default(examples: string[batch] of serialized raw tf.Example) parses only
        ``cfg.feature_columns``: the label and excluded columns may be absent (ignored if sent).
        binary      -> {"probabilities": float32[batch, 1]}  P(``cfg.label.positive_class``)
        multiclass  -> {"probabilities": float32[batch, K]   one per ``cfg.label.classes``, in order,
                        "class_ids": int64[batch]            argmax,
                        "classes": string[batch]}            that class as a string
        regression  -> {"predictions": float32[batch, 1]}    in the label's units
    transform_features(examples: string[batch] of serialized raw tf.Example, every column)
        -> the transformed features, as Beam wrote them (for TFMA).

:func:`output_key` names the output TFMA and the infra check read. A transform whose model inputs
need a column outside ``cfg.feature_columns`` (the label, an excluded column) is refused before
training, naming the column.

The ``model_id`` is the sha256 of the transform artifact, ``cfg.model``, ``cfg.label``, the feature
columns, the warm-start model and the training code, so a re-run on the same inputs reuses the
model.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from pathlib import Path
from typing import Any

from pipelines import model as model_lib
from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file, sha256_json, sha256_tree
from pipelines.results import Artifact, ArtifactKind, artifact
from pipelines.snapshots import raw_feature_spec
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)

SAVED_MODEL_DIR = "saved_model"
RESULT_FILE = "model.json"
OUTPUT_KEYS = {"binary": "probabilities", "multiclass": "probabilities",
               "regression": "predictions"}
# The outputs of serving_default per task (the model contract).
SIGNATURE_OUTPUTS = {"binary": ("probabilities",),
                     "multiclass": ("probabilities", "class_ids", "classes"),
                     "regression": ("predictions",)}


def output_key(cfg: PipelineConfig) -> str:
    """The serving output TFMA and the infra check read: probabilities or predictions."""
    return OUTPUT_KEYS[cfg.task]


def n_classes(cfg: PipelineConfig) -> int | None:
    """Units of the head for classification (2 for binary), None for regression."""
    return len(cfg.label.classes or []) if cfg.task != "regression" else None


def _code_sha256() -> str:
    source = inspect.getsource(model_lib) + Path(__file__).read_text()
    return hashlib.sha256(source.encode()).hexdigest()


def _transform_record(transform_uri: str) -> dict[str, Any]:
    path = Path(transform_uri) / "transform.json"
    if not path.is_file():
        raise PipelineError(f"{transform_uri} is not a transform artifact (no transform.json); "
                            "pass the transform_uri printed by `pipelines transform`")
    return read_json(path)


def model_id(cfg: PipelineConfig, transform: dict[str, Any], warm_sha: str | None) -> str:
    import importlib.metadata  # the TF version without importing TensorFlow (seconds)

    return sha256_json({
        "transform": transform["sha256"], "model": cfg.model.model_dump(),
        "label": cfg.label.model_dump(mode="json"),
        "features": [c.name for c in cfg.feature_columns],
        "warm_start": warm_sha, "code": _code_sha256(),
        "tf": importlib.metadata.version("tensorflow"),
    })[:16]


def fit(cfg: PipelineConfig, tft_output: Any, transform: dict[str, Any],
        warm_start_from: str | None = None) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Builds, (warm starts) and trains the model of ``cfg.task``; returns (model, history, info).

    ``transform`` is the transform step's result: the split file patterns (``transformed``) and
    their record counts (``rows``).

    ``info["metrics"]`` holds ``eval_loss`` and ``eval_<metric>`` for the task's Keras metrics
    (binary auc, accuracy; multiclass accuracy, top2_accuracy; regression rmse, mae) on the eval
    split with the restored best weights, plus ``epochs_run`` and ``best_epoch`` (by the early
    stopping monitor). ``info["headline_metric"]`` names the one that says how good it is.
    """
    import tensorflow as tf
    import tf_keras as keras

    hp = cfg.model
    head = model_lib.head(cfg.task)
    keras.utils.set_random_seed(hp.seed)
    tf.config.experimental.enable_op_determinism()
    label = model_lib.label_key(cfg)
    numeric, categorical = model_lib.split_features(tft_output, label)
    names = numeric + list(categorical)
    transformed = transform["transformed"]
    try:
        stats = model_lib.label_stats(model_lib.read_labels(transformed["train"], tft_output, label),
                                      cfg.task, n_classes(cfg))
    except ValueError as exc:
        raise PipelineError(f"label {cfg.label.column!r}: {exc}") from exc
    # The row counts give the datasets a known length: Keras then runs several batches per call.
    rows = {"train": stats["rows"], "eval": transform["rows"]["eval"]}
    if not rows["eval"]:
        raise PipelineError(f"no eval rows in {transformed['eval']}: training needs the eval "
                            "split for early stopping; run the transform step again, and check "
                            "the snapshot's eval split (split.eval_fraction)")
    data = {split: model_lib.make_dataset(transformed[split], tft_output, label, hp.batch_size,
                                          shuffle=split == "train", seed=hp.seed, names=names,
                                          rows=rows[split])
            for split in ("train", "eval")}
    model = model_lib.build_model(numeric, categorical, hp, cfg.task, n_classes(cfg),
                                  target=stats if cfg.task == "regression" else None,
                                  steps_per_execution=model_lib.steps_per_execution(
                                      -(-rows["train"] // hp.batch_size)))
    info: dict[str, Any] = {"numeric_features": numeric, "categorical_features": categorical,
                            "task": cfg.task, "label_stats": stats,
                            "headline_metric": f"eval_{head.headline}",
                            "early_stopping": {"monitor": head.monitor, "mode": head.mode}}
    if warm_start_from:
        info["warm_start"] = model_lib.warm_start(model, warm_start_from)
    callbacks = [keras.callbacks.EarlyStopping(
        monitor=head.monitor, mode=head.mode, patience=hp.early_stopping_patience,
        restore_best_weights=True)] if hp.early_stopping_patience else []
    history = model.fit(data["train"], validation_data=data["eval"], epochs=hp.epochs,
                        callbacks=callbacks, verbose=0)
    curves = {k: [float(x) for x in v] for k, v in history.history.items()}
    final = model.evaluate(data["eval"], verbose=0, return_dict=True)
    info["metrics"] = {"eval_" + k: float(v) for k, v in final.items()}
    info["metrics"]["epochs_run"] = len(curves.get("loss", []))
    monitored = curves[head.monitor]
    pick = max if head.mode == "max" else min
    info["metrics"]["best_epoch"] = int(pick(range(len(monitored)),
                                             key=monitored.__getitem__)) + 1
    return model, curves, info


def check_serving_inputs(cfg: PipelineConfig, tft_output: Any, names: list[str]) -> None:
    """Raises PipelineError if a model input needs a raw column outside ``cfg.feature_columns``.

    serving_default parses only the feature columns, and TFT's transform layer silently drops the
    outputs whose inputs are absent; a transform that builds a model input from the label or an
    excluded column would then export a model that cannot serve. The offending column is found by
    tracing the transform layer with the feature columns plus each other column in turn.
    """
    import tensorflow as tf

    layer = tft_output.transform_features_layer()

    def outputs_with(columns: list[str]) -> set[str]:
        spec = raw_feature_spec(cfg, columns=columns)
        fn = tf.function(lambda ex: layer(tf.io.parse_example(ex, spec)))
        return set(fn.get_concrete_function(tf.TensorSpec([None], tf.string)).structured_outputs)

    features = [c.name for c in cfg.feature_columns]
    missing = sorted(set(names) - outputs_with(features))
    if not missing:
        return
    culprits: dict[str, list[str]] = {}
    for column in (c.name for c in cfg.columns if c.name not in features):
        restored = sorted(set(missing) & outputs_with([*features, column]))
        if restored:
            culprits[column] = restored
    role = {c.name: ("the label" if c.name == cfg.label.column else f"role {c.role}")
            for c in cfg.columns}
    if culprits:
        detail = "; ".join(f"column {col!r} ({role[col]}) feeds {', '.join(inputs)}"
                           for col, inputs in culprits.items())
    else:
        detail = (f"model inputs {', '.join(missing)} need columns outside the feature columns "
                  f"(one or more of {[c for c in role if c not in features]})")
    raise PipelineError(
        f"transform module {cfg.transform_module} builds model inputs from columns that "
        f"serving does not receive: {detail}. Serving parses only cfg.feature_columns "
        f"{features}; make the column a feature (role: feature) or stop reading it in the "
        "transform (an excluded column must not feed the model)")


def export(model: Any, tft_output: Any, cfg: PipelineConfig, path: Path, *,
           check: bool = True) -> None:
    """Saves ``model`` with the TFT graph inside both signatures (TFX's tft_layer pattern).

    ``check=False`` skips :func:`check_serving_inputs` (it traces the transform graph again),
    for a caller that ran it on the same transform before training (:func:`train`).

    Raises:
        PipelineError: a model input needs a column serving does not parse (see
            :func:`check_serving_inputs`).
    """
    import tensorflow as tf

    names = list(model.input_names)
    if check:
        check_serving_inputs(cfg, tft_output, names)
    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = raw_feature_spec(cfg)
    serving_spec = raw_feature_spec(cfg, columns=[c.name for c in cfg.feature_columns])
    task = cfg.task
    class_names = [str(c) for c in cfg.label.classes or []]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, serving_spec))
        output = model(model_lib.to_model_inputs(transformed, names))
        if task == "binary":
            return {"probabilities": output}
        if task == "regression":
            return {"predictions": output}
        class_ids = tf.argmax(output, axis=1, output_type=tf.int64)
        return {"probabilities": output, "class_ids": class_ids,
                "classes": tf.gather(tf.constant(class_names), class_ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    model.save(str(path), save_format="tf", save_traces=False, signatures={
        "serving_default": serve.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    })


def save_curves(curves: dict[str, list[float]], json_path: Path, png_path: Path,
                headline: str = "auc") -> None:
    """Writes the per-epoch curves as JSON and as a two-panel PNG (loss, the ``headline`` metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json_atomic(json_path, curves)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(curves["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", headline), strict=True):
        ax.plot(epochs, curves.get(metric, []), marker="o", label="training")
        ax.plot(epochs, curves.get(f"val_{metric}", []), marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def train(cfg: PipelineConfig, home: Path, ctx: RunContext, transform_uri: str,
          warm_start_from: str | None = None, force: bool = False) -> dict[str, Any]:
    """Runs the train step; see the module docstring for what it writes.

    Args:
        cfg: the pipeline config (``model`` hyperparameters, ``label`` and its task, the
            feature columns).
        home: artifact store root.
        ctx: who runs the step (recorded by the runner).
        transform_uri: a transform artifact written by the transform step.
        warm_start_from: optional SavedModel (the production model) to start the weights from.
        force: train again even when a model for these inputs exists: the new model is
            ``<id>-r<N>`` beside the old one, which stays untouched.

    Returns:
        model_uri (the SavedModel folder), model_id, sha256, task, metrics (``eval_loss`` and
        the task's ``eval_*``, see :func:`fit`), headline_metric (e.g. ``eval_auc``,
        ``eval_accuracy``, ``eval_rmse``), output_key, signature_outputs, label_stats,
        curves_json, curves_png, reused, inputs, outputs.

    Raises:
        PipelineError: not a transform artifact, a bad warm start folder, a label the task
            cannot train on, or a model input built from a column serving does not receive.
    """
    del ctx
    transform = _transform_record(transform_uri)
    # The transform's own output records (graph and transformed examples), as it wrote them.
    inputs: list[Artifact] = [o.copy() for o in transform["outputs"]]
    warm_sha = None
    if warm_start_from:
        if not (Path(warm_start_from) / "saved_model.pb").is_file():
            raise PipelineError(f"warm_start_from {warm_start_from} holds no saved_model.pb; pass "
                                "a SavedModel folder (the registry's production version)")
        warm_sha = sha256_tree(warm_start_from)
        inputs.append(artifact(ArtifactKind.MODEL, warm_start_from, warm_sha, role="warm_start"))
    mid = model_id(cfg, transform, warm_sha)
    final = store.path(home, store.Kind.MODEL, cfg.name, mid)
    if (final / RESULT_FILE).is_file() and not force:
        log.info("model %s exists for these inputs: reusing %s", mid, final)
        return {**read_json(final / RESULT_FILE), "reused": True}
    if force and final.exists():  # never over an artifact lineage may point to: a new revision
        final = store.revision(final)
        mid = final.name

    import tensorflow_transform as tft  # after the reuse check: a reused model costs no import

    started = time.perf_counter()
    tft_output = tft.TFTransformOutput(transform["transform_graph_uri"])
    # Before training: a transform that feeds the model from a column serving never receives.
    numeric, categorical = model_lib.split_features(tft_output, model_lib.label_key(cfg))
    check_serving_inputs(cfg, tft_output, numeric + list(categorical))
    model, curves, info = fit(cfg, tft_output, transform, warm_start_from)
    headline = info["headline_metric"]
    with publish(final) as tmp:
        export(model, tft_output, cfg, tmp / SAVED_MODEL_DIR, check=False)  # checked above
        save_curves(curves, tmp / "curves.json", tmp / "curves.png",
                    headline=headline.removeprefix("eval_"))
        model_sha = sha256_tree(tmp / SAVED_MODEL_DIR)
        outputs = [
            artifact(ArtifactKind.MODEL, final / SAVED_MODEL_DIR, model_sha,
                            signatures=["serving_default", "transform_features"],
                            output_key=output_key(cfg), task=cfg.task, **info["metrics"]),
            artifact(ArtifactKind.CURVES, final / "curves.json",
                            sha256_file(tmp / "curves.json")),
            artifact(ArtifactKind.CURVES_PLOT, final / "curves.png",
                            sha256_file(tmp / "curves.png")),
        ]
        result = {
            "model_id": mid, "model_uri": str(final / SAVED_MODEL_DIR), "sha256": model_sha,
            "metrics": info["metrics"], "curves_json": str(final / "curves.json"),
            "curves_png": str(final / "curves.png"), "task": cfg.task,
            "headline_metric": headline, "output_key": output_key(cfg),
            "signature_outputs": list(SIGNATURE_OUTPUTS[cfg.task]),
            "label_stats": info["label_stats"], "early_stopping": info["early_stopping"],
            "warm_start": info.get("warm_start"), "features": {
                "numeric": info["numeric_features"], "categorical": info["categorical_features"]},
            "seconds": round(time.perf_counter() - started, 2),
            "inputs": inputs, "outputs": outputs,
        }
        write_json_atomic(tmp / RESULT_FILE, result)
    log.info("model %s written to %s (%s %.4f)", mid, final, headline, info["metrics"][headline])
    return {**result, "reused": False}
