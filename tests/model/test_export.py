"""The exported SavedModel: its signatures, no training/serving skew, and no repo code to serve.

Real chain: the session fixtures transform and train on the real Adult snapshot once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.model.helpers import predict, raw_examples

pytestmark = pytest.mark.slow

N_ROWS = 1000

# Run in a fresh interpreter: imports of this repo's packages are blocked, so serving provably
# needs only TensorFlow and the SavedModel.
FRESH_PROCESS = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipelines", "transforms", "tests"):
            raise ImportError(f"serving must not import {name}")
sys.meta_path.insert(0, Block())
import tensorflow as tf
records = [r.numpy() for r in tf.data.TFRecordDataset(sys.argv[2])]
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
probs = serve(examples=tf.constant(records))["probabilities"].numpy()[:, 0]
print(json.dumps([float(p) for p in probs]))
"""


def test_saved_model_cli_lists_both_signatures(trained):
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--all", "--dir", trained["model_uri"]],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['transform_features']" in out
    serving = out.split("signature_def['serving_default']")[1]
    assert "inputs['examples']" in serving and "DT_STRING" in serving
    assert "outputs['probabilities']" in serving


def test_beam_features_equal_in_graph_transform_features(trained, transformed, snapshot):
    """On the same 1,000 raw eval rows: Beam's output equals the SavedModel's transform_features.

    Beam's eval file holds every eval row (in sha256 order); each in-graph row must find its own
    Beam row with equal integers and floats within 1e-6.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    records = raw_examples(snapshot["uri"], "eval", N_ROWS)
    in_graph = tf.saved_model.load(trained["model_uri"]).signatures["transform_features"](
        examples=tf.constant(records))
    spec = tft.TFTransformOutput(transformed["transform_graph_uri"]).transformed_feature_spec()
    files = tf.io.gfile.glob(transformed["transformed"]["eval"])
    beam = tf.io.parse_example(next(iter(tf.data.TFRecordDataset(files).batch(100_000))), spec)
    assert set(in_graph) == set(beam)
    ints = sorted(k for k in spec if spec[k].dtype == tf.int64)
    floats = sorted(k for k in spec if spec[k].dtype == tf.float32)
    assert ints and floats
    beam_rows = defaultdict(list)
    beam_ints = np.stack([beam[k].numpy() for k in ints], axis=1)
    beam_floats = np.stack([beam[k].numpy() for k in floats], axis=1)
    for i, key in enumerate(map(tuple, beam_ints)):
        beam_rows[key].append(i)
    graph_ints = np.stack([in_graph[k].numpy() for k in ints], axis=1)
    graph_floats = np.stack([in_graph[k].numpy() for k in floats], axis=1)
    unmatched = 0
    for key, row in zip(map(tuple, graph_ints), graph_floats, strict=True):
        candidates = beam_rows.get(key, [])
        hit = next((j for j in candidates if np.all(np.abs(beam_floats[j] - row) <= 1e-6)), None)
        if hit is None:
            unmatched += 1
        else:
            candidates.remove(hit)
    assert unmatched == 0, f"{unmatched} of {N_ROWS} rows differ between Beam and the graph"


def test_fresh_process_predicts_as_the_in_memory_model(adult_cfg, transformed, snapshot,
                                                       tmp_path):
    """Train briefly, keep the Keras model in memory, export; a new process must agree."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipelines import model as model_lib
    from pipelines.train import export, fit

    cfg = adult_cfg.model_copy(update={"model": adult_cfg.model.model_copy(update={"epochs": 1})})
    tft_output = tft.TFTransformOutput(transformed["transform_graph_uri"])
    model, _, _ = fit(cfg, tft_output, transformed)
    export(model, tft_output, cfg, tmp_path / "saved_model")
    records = raw_examples(snapshot["uri"], "eval", N_ROWS)
    spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k != cfg.label.column}
    features = tft_output.transform_features_layer()(tf.io.parse_example(records, spec))
    in_memory = model(model_lib.to_model_inputs(features, list(model.input_names))).numpy()[:, 0]

    with tf.io.TFRecordWriter(str(tmp_path / "rows.tfrecord")) as writer:
        for r in records:
            writer.write(r)
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "saved_model"),
         str(tmp_path / "rows.tfrecord")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    assert fresh.shape == (N_ROWS,)
    np.testing.assert_allclose(fresh, in_memory, atol=1e-6)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    np.testing.assert_allclose(predict(loaded, records), in_memory, atol=1e-6)
