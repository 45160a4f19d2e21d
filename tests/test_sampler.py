import numpy as np
import pytest

from bench.data import open_dataset
from bench.errors import BenchError
from bench.sampler import distinct_label_count, repeated_fraction, repetition_rate, sample_batch


class FakeSource:
    """A dataset of 40 classes with 5 items each."""

    name = "fake"
    num_classes = 40
    channels = 3
    labels = np.repeat(np.arange(40), 5)


@pytest.mark.parametrize("batch_size", [1, 2, 8, 16, 32, 64, 100, 256])
@pytest.mark.parametrize("repetition", [0.0, 0.25, 0.5, 0.75, 0.9, 0.96])
def test_exact_distinct_count(batch_size, repetition):
    expected = round((1 - repetition) * batch_size)
    if expected == 0:  # a rate above 1 - 1/B would leave no label: refused, never run at 1 - 1/B instead
        with pytest.raises(BenchError, match=rf"leaves no label .* at most r = {1 - 1 / batch_size:.3g}\); (at B = {batch_size}|a batch of 1)"):
            sample_batch(FakeSource(), batch_size, repetition, seed=7, num_classes=300, label_source="model")
        return
    if repetition > 0 and expected == batch_size:  # asks for repetition, would get none: refused
        with pytest.raises(BenchError, match=f"repeats no label .* at B = {batch_size}|batch of 1 can only"):
            sample_batch(FakeSource(), batch_size, repetition, seed=7, num_classes=300, label_source="model")
        return
    batch = sample_batch(FakeSource(), batch_size, repetition, seed=7, num_classes=300, label_source="model")
    assert len(batch.labels) == batch_size
    assert len(np.unique(batch.labels)) == expected
    assert repetition_rate(batch.labels) == pytest.approx(1 - expected / batch_size)


def test_paper_example_b256_ten_classes():
    assert distinct_label_count(256, 0.961) == 10
    batch = sample_batch(FakeSource(), 256, 0.961, seed=0, num_classes=1000, label_source="model")
    assert repetition_rate(batch.labels) == pytest.approx(0.961, abs=1e-3)  # the abstract's "96%"


def test_dataset_labels_match_items_and_are_deterministic():
    source = FakeSource()
    a = sample_batch(source, 16, 0.5, seed=1)
    b = sample_batch(source, 16, 0.5, seed=1)
    c = sample_batch(source, 16, 0.5, seed=2)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.crop_seeds, b.crop_seeds)
    assert not np.array_equal(a.items, c.items)
    assert np.array_equal(source.labels[a.items], a.labels)
    assert len(np.unique(a.labels)) == 8


def test_repeated_fraction():
    assert repeated_fraction(np.array([1, 1, 2, 3])) == 0.5
    assert repeated_fraction(np.array([4, 4, 4, 4])) == 1.0
    assert repeated_fraction(np.array([1, 2, 3])) == 0.0


@pytest.mark.parametrize(
    "batch_size, repetition, message",
    [(0, 0.0, "at least 1"), (8, 1.0, "[0, 1)"), (8, -0.1, "[0, 1)"), (64, 0.0, "needs 64 distinct classes")],
)
def test_impossible_requests(batch_size, repetition, message):
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace(")", r"\)")):
        sample_batch(FakeSource(), batch_size, repetition, seed=0)


def test_model_label_source_is_explicit_for_the_embedded_set():
    dataset = open_dataset("embedded")
    with pytest.raises(BenchError, match="--label-source model"):
        sample_batch(dataset, 256, 0.0, seed=0)
    batch = sample_batch(dataset, 256, 0.9, seed=0, num_classes=1000, label_source="model")
    assert batch.label_source == "model"
    assert len(np.unique(batch.labels)) == 26
    assert batch.labels.max() < 1000
