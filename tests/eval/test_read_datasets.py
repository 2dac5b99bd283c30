"""Evaluate's reader: every dataset's rows as TFMA record batches, each batch of one dataset
(:func:`pipelines.eval_tfma.read_datasets`), with one real Beam pipeline over real TFRecords."""

from __future__ import annotations

import pytest

from pipelines import eval_tfma
from pipelines.errors import PipelineError

pytestmark = pytest.mark.slow


def _write(path, rows):
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with tf.io.TFRecordWriter(str(path)) as w:
        for age, income in rows:
            ex = tf.train.Example(features=tf.train.Features(feature={
                "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[age])),
                "income": tf.train.Feature(bytes_list=tf.train.BytesList(value=[income]))}))
            records.append(ex.SerializeToString())
            w.write(records[-1])
    return records


def test_each_row_comes_once_in_a_batch_of_its_own_dataset(tmp_path, adult_cfg):
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from apache_beam.testing.util import assert_that, equal_to

    rows = [(17 + i % 70, b">50K" if i % 3 == 0 else b"<=50K") for i in range(1240)]
    expected = []
    for name, file, part in (("eval", "eval/a.tfrecord", rows[:1230]),
                             ("eval", "eval/b.tfrecord", rows[1230:1235]),
                             ("golden", "golden/c.tfrecord", rows[1235:])):
        for rec, (_, income) in zip(_write(tmp_path / file, part), part, strict=True):
            expected.append((name, rec, int(income == b">50K")))
    datasets = {"eval": [str(tmp_path / "eval" / "*.tfrecord")],
                "golden": [str(tmp_path / "golden" / "*.tfrecord")]}

    def rows_of(batch):
        col = lambda name: batch.column(batch.schema.get_field_index(name)).to_pylist()  # noqa: E731
        names = {d[0].decode() for d in col(eval_tfma.DATASET_KEY)}
        assert len(names) == 1, f"a batch mixes datasets {names}"
        name = names.pop()
        return [(name, raw[0], label[0]) for raw, label in
                zip(col(tfma.ARROW_INPUT_COLUMN), col(eval_tfma.LABEL_KEY), strict=True)]

    with beam.Pipeline() as p:
        batches = p | eval_tfma.read_datasets(adult_cfg, datasets)
        assert_that(batches | beam.FlatMap(rows_of), equal_to(expected), label="rows")
        assert_that(batches | beam.Map(lambda b: b.num_rows <= eval_tfma.READ_BATCH),
                    lambda sizes: all(sizes) or pytest.fail("a batch over READ_BATCH"),
                    label="sizes")


def test_a_pattern_matching_nothing_or_a_file_in_two_datasets_is_refused(tmp_path):
    (tmp_path / "x.tfrecord").write_bytes(b"")
    with pytest.raises(PipelineError, match="no file matches .*nothing-here"):
        eval_tfma.dataset_files({"eval": [str(tmp_path / "nothing-here*")]})
    with pytest.raises(PipelineError, match="x.tfrecord is in datasets eval and golden"):
        eval_tfma.dataset_files({"eval": [str(tmp_path / "*.tfrecord")],
                                 "golden": [str(tmp_path / "x.tfrecord")]})
