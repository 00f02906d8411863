"""bench/bench_common.py's MFU accounting: the FLOPs counted for a model whose sizes are known by hand,
and the peak looked up for a device name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_common import bf16_peak_flops, training_flops  # noqa: E402


@pytest.mark.slow
def test_training_flops_count_matrix_parameters_and_attention_not_embeddings():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, num_labels=1, pad_token_id=0,
    ))
    # Per layer: q, k, v, o (4 x 32 x 32) and the SwiGLU MLP (3 x 32 x 64); then the 32 x 1 score head.
    # Not counted: the 100 x 32 embedding (a look-up) and the norms' vectors.
    matrix = 2 * (4 * 32 * 32 + 3 * 32 * 64) + 32
    assert training_flops(model, tokens=10, attention_row_squares=200) == 6 * matrix * 10 + 12 * 2 * 32 * 200


def test_peaks_by_device_name():
    assert bf16_peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bf16_peak_flops("NVIDIA H100 PCIe") == 756e12  # matched before the plain "H100"
    assert bf16_peak_flops("NVIDIA H200") == 989.4e12
    assert bf16_peak_flops("Some Future GPU") is None
