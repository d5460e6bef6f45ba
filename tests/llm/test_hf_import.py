"""HF models through the plain importers: encoders with a padding mask, a decoder via ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import compiler  # noqa: E402
from tests.llm.hf_models import ENCODERS, build, build_encoder  # noqa: E402


class Hidden(torch.nn.Module):
    """(input_ids, attention_mask) -> the encoder's last hidden state."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.from_numpy(np.random.default_rng(0).integers(3, 128, (2, 8)))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # the second sentence is padded
    return ids, mask


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_with_padding_mask_matches_torch(name: str) -> None:
    model = Hidden(build_encoder(name))
    ids, mask = _batch()
    graph = compiler.import_model(model, example_inputs=(ids, mask))
    (got,) = compiler.interpret(graph, ids.numpy(), mask.numpy())
    with torch.no_grad():
        want = model(ids, mask).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


class Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.mark.slow
def test_decoder_through_torch_onnx_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = Logits(build("llama")).eval()
    ids, mask = _batch()
    mask = mask.flip(1)  # left padding: the padded queries' attention rows are fully masked
    path = tmp_path / "llama.onnx"
    torch.onnx.export(model, (ids, mask), str(path), input_names=["ids", "mask"], dynamo=True)
    graph = compiler.import_model(str(path))
    assert "math.isnan" in graph.op_counts()  # torch's exporter guards its masked softmax
    (got,) = compiler.interpret(graph, ids.numpy(), mask.numpy())
    with torch.no_grad():
        want = model(ids, mask).numpy()
    real = mask.numpy().astype(bool)  # torch gives padded positions garbage; compare the rest
    np.testing.assert_allclose(got[real], want[real], rtol=1e-4, atol=1e-4)
