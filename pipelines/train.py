"""Step `train`: a Keras model on the transformed data, exported with the transform graph inside.

Called by ``runner.run_step("train", ...)`` (the CLI ``pipelines train`` and the DAG task). Writes::

    <home>/models/<pipeline>/<model_id>/
        saved_model/     the SavedModel: `serving_default` and `transform_features` signatures
        curves.json      per-epoch training and validation loss, AUC and accuracy
        curves.png       the same as a plot
        model.json       the step result

Signatures (no Python from this repo is needed to serve):
    serving_default(examples: string[batch] of serialized raw tf.Example, label not required)
        -> {"probabilities": float32[batch, 1]}: probability of ``cfg.label.positive_class``.
    transform_features(examples: string[batch] of serialized raw tf.Example, label included)
        -> the transformed features, as Beam wrote them (for TFMA).

The ``model_id`` is the sha256 of the transform artifact, ``cfg.model``, the warm-start model and
the training code, so a re-run on the same inputs reuses the model.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from pathlib import Path
from typing import Any

from pipelines import common
from pipelines import model as model_lib
from pipelines.common import PipelineError, RunContext
from pipelines.config import PipelineConfig

log = logging.getLogger(__name__)

SAVED_MODEL_DIR = "saved_model"
RESULT_FILE = "model.json"
OUTPUT_KEY = "probabilities"


def _code_sha256() -> str:
    source = inspect.getsource(model_lib) + Path(__file__).read_text()
    return hashlib.sha256(source.encode()).hexdigest()


def _transform_record(transform_uri: str) -> dict[str, Any]:
    path = Path(transform_uri) / "transform.json"
    if not path.is_file():
        raise PipelineError(f"{transform_uri} is not a transform artifact (no transform.json); "
                            "pass the transform_uri printed by `pipelines transform`")
    return common.read_json(path)


def model_id(cfg: PipelineConfig, transform: dict[str, Any], warm_sha: str | None) -> str:
    import tensorflow as tf

    return common.sha256_json({
        "transform": transform["sha256"], "model": cfg.model.model_dump(), "label": cfg.label.column,
        "warm_start": warm_sha, "code": _code_sha256(), "tf": tf.__version__,
    })[:16]


def fit(cfg: PipelineConfig, tft_output: Any, transformed: dict[str, str],
        warm_start_from: str | None = None) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Builds, (warm starts) and trains the model; returns (model, history, info)."""
    import tensorflow as tf
    import tf_keras as keras

    hp = cfg.model
    keras.utils.set_random_seed(hp.seed)
    tf.config.experimental.enable_op_determinism()
    label = model_lib.label_key(cfg)
    numeric, categorical = model_lib.split_features(tft_output, label)
    names = numeric + list(categorical)
    data = {split: model_lib.make_dataset(transformed[split], tft_output, label, hp.batch_size,
                                          shuffle=split == "train", seed=hp.seed, names=names)
            for split in ("train", "eval")}
    model = model_lib.build_model(numeric, categorical, hp)
    info: dict[str, Any] = {"numeric_features": numeric, "categorical_features": categorical}
    if warm_start_from:
        info["warm_start"] = model_lib.warm_start(model, warm_start_from)
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=hp.early_stopping_patience,
        restore_best_weights=True)] if hp.early_stopping_patience else []
    history = model.fit(data["train"], validation_data=data["eval"], epochs=hp.epochs,
                        callbacks=callbacks, verbose=0)
    curves = {k: [float(x) for x in v] for k, v in history.history.items()}
    final = model.evaluate(data["eval"], verbose=0, return_dict=True)
    info["metrics"] = {"eval_" + k: float(v) for k, v in final.items()}
    info["metrics"]["epochs_run"] = len(curves.get("loss", []))
    info["metrics"]["best_epoch"] = int(max(range(len(curves["val_auc"])),
                                            key=curves["val_auc"].__getitem__)) + 1
    return model, curves, info


def export(model: Any, tft_output: Any, cfg: PipelineConfig, path: Path) -> None:
    """Saves ``model`` with the TFT graph inside both signatures (TFX's tft_layer pattern)."""
    import tensorflow as tf

    names = list(model.input_names)
    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != cfg.label.column}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, serving_spec))
        return {OUTPUT_KEY: model(model_lib.to_model_inputs(transformed, names))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    model.save(str(path), save_format="tf", save_traces=False, signatures={
        "serving_default": serve.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    })


def save_curves(curves: dict[str, list[float]], json_path: Path, png_path: Path) -> None:
    """Writes the per-epoch curves as JSON and as a two-panel PNG (loss, AUC)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common.write_json_atomic(json_path, curves)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(curves["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "auc"), strict=True):
        ax.plot(epochs, curves[metric], marker="o", label="training")
        ax.plot(epochs, curves[f"val_{metric}"], marker="o", label="validation")
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
        cfg: the pipeline config (``model`` hyperparameters, ``label``).
        home: artifact store root.
        ctx: who runs the step (recorded by the runner).
        transform_uri: a transform artifact written by the transform step.
        warm_start_from: optional SavedModel (the production model) to start the weights from.
        force: train again even when a model for these inputs exists (the old one is set aside).

    Returns:
        model_uri (the SavedModel folder), model_id, sha256, metrics, curves_json, curves_png,
        reused, inputs, outputs.
    """
    import tensorflow_transform as tft

    del ctx
    transform = _transform_record(transform_uri)
    # The transform's own output records (graph and transformed examples), as it wrote them.
    inputs = [dict(o) for o in transform["outputs"]]
    warm_sha = None
    if warm_start_from:
        if not (Path(warm_start_from) / "saved_model.pb").is_file():
            raise PipelineError(f"warm_start_from {warm_start_from} holds no saved_model.pb; pass "
                                "a SavedModel folder (the registry's production version)")
        warm_sha = common.sha256_tree(warm_start_from)
        inputs.append(common.artifact("model", warm_start_from, warm_sha, role="warm_start"))
    mid = model_id(cfg, transform, warm_sha)
    final = Path(home) / "models" / cfg.name / mid
    if (final / RESULT_FILE).is_file() and not force:
        log.info("model %s exists for these inputs: reusing %s", mid, final)
        return {**common.read_json(final / RESULT_FILE), "reused": True}

    started = time.perf_counter()
    tft_output = tft.TFTransformOutput(transform["transform_graph_uri"])
    model, curves, info = fit(cfg, tft_output, transform["transformed"], warm_start_from)
    with common.atomic_dir(final, replace=force) as tmp:
        export(model, tft_output, cfg, tmp / SAVED_MODEL_DIR)
        save_curves(curves, tmp / "curves.json", tmp / "curves.png")
        model_sha = common.sha256_tree(tmp / SAVED_MODEL_DIR)
        outputs = [
            common.artifact("model", final / SAVED_MODEL_DIR, model_sha,
                            signatures=["serving_default", "transform_features"],
                            output_key=OUTPUT_KEY, **info["metrics"]),
            common.artifact("curves", final / "curves.json",
                            common.sha256_file(tmp / "curves.json")),
            common.artifact("curves_plot", final / "curves.png",
                            common.sha256_file(tmp / "curves.png")),
        ]
        result = {
            "model_id": mid, "model_uri": str(final / SAVED_MODEL_DIR), "sha256": model_sha,
            "metrics": info["metrics"], "curves_json": str(final / "curves.json"),
            "curves_png": str(final / "curves.png"), "output_key": OUTPUT_KEY,
            "warm_start": info.get("warm_start"), "features": {
                "numeric": info["numeric_features"], "categorical": info["categorical_features"]},
            "seconds": round(time.perf_counter() - started, 2),
            "inputs": inputs, "outputs": outputs,
        }
        common.write_json_atomic(tmp / RESULT_FILE, result)
    log.info("model %s written to %s (eval AUC %.4f)", mid, final, info["metrics"]["eval_auc"])
    return {**result, "reused": False}
