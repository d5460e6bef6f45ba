"""The test model zoo: small torch models built in code, with no downloads.

Each `Case` names a model, how to build it (deterministic: seeded init, or trained weights
from `compiler/data/*.npz`, returned in `.eval()` mode) and its example inputs. Frontend,
pass and backend tests iterate over `CASES`; `CASES_FOR_FPGA` are the ones small enough for
the HLS backend.

    case = get_case("digits_cnn")
    model, inputs = case.build(), case.example_inputs()
    exported = torch.export.export(model, inputs)
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tests.datasets import Split, digits_split, jet_split

DATA_DIR = Path(__file__).resolve().parents[1] / "compiler" / "data"
"""Where the trained weights (`<case>.npz`, a state_dict) and `digits_cnn.onnx` live."""

DynamicDims = dict[int, dict[int, tuple[str, int, int]]]
"""Input index -> {dim index: (name, min, max)}: which example-input dims may vary."""


@dataclass(frozen=True)
class Case:
    """One zoo model: a deterministic builder, example inputs and what it needs to run.

    `requires` lists importable modules the case needs (it is skipped without them); `slow`
    marks the expensive ones (their tests carry `pytest.mark.slow`); `dataset` gives the data the
    weights were trained on, for accuracy and calibration.
    """

    name: str
    build: Callable[[], nn.Module]
    example_inputs: Callable[[], tuple[torch.Tensor, ...]]
    dynamic_dims: DynamicDims | None = None
    requires: tuple[str, ...] = ()
    slow: bool = False
    dataset: Callable[[], Split] | None = None

    def missing(self) -> list[str]:
        """The modules in `requires` that cannot be imported (for skip reasons)."""
        return [module for module in self.requires if importlib.util.find_spec(module) is None]

    def available(self) -> bool:
        """True when every module in `requires` can be imported."""
        return not self.missing()

    def dynamic_shapes(self) -> tuple[dict[int, torch.export.Dim] | None, ...] | None:
        """`dynamic_dims` in the form `torch.export.export(dynamic_shapes=...)` takes."""
        if self.dynamic_dims is None:
            return None
        count = len(self.example_inputs())
        return tuple(
            {
                dim: torch.export.Dim(name, min=low, max=high)
                for dim, (name, low, high) in dims.items()
            }
            if (dims := self.dynamic_dims.get(index))
            else None
            for index in range(count)
        )


def export_case(case: Case, dynamic: bool = False) -> torch.export.ExportedProgram:
    """Build `case` and `torch.export` it on its example inputs (with `dynamic_dims` if asked).

    Dynamic export turns on torch's size-oblivious reasoning: slicing a fixed-size buffer
    (tiny_gpt's causal mask `future[:seq, :seq]`) and then using it elementwise otherwise
    makes torch specialize `seq` to the buffer size (it guards on contiguity, true only there).
    Beware: in torch 2.13 `run_decompositions()` retraces without it and silently turns `seq`
    back into the constant 128 (`range_constraints` becomes empty), even inside the patch.
    """
    import torch.fx.experimental._config as fx_config

    model, inputs = case.build(), case.example_inputs()
    if not dynamic or case.dynamic_dims is None:
        return torch.export.export(model, inputs)
    with fx_config.patch(backed_size_oblivious=True):  # type: ignore[attr-defined]
        return torch.export.export(model, inputs, dynamic_shapes=case.dynamic_shapes())


def load_weights(model: nn.Module, name: str) -> nn.Module:
    """Load `compiler/data/<name>.npz` (a state_dict saved by scripts/train_zoo.py)."""
    with np.load(DATA_DIR / f"{name}.npz") as arrays:
        state = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    model.load_state_dict(state)
    return model


def _randn(*shapes: tuple[int, ...]) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Example inputs: one float32 normal tensor per shape, seeded 0, 1, ... (same everywhere)."""

    def inputs() -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.randn(shape, generator=torch.Generator().manual_seed(seed))
            for seed, shape in enumerate(shapes)
        )

    return inputs


# --- trained FPGA models ---------------------------------------------------------------------


class JetMLP(nn.Module):
    """hls4ml's jet tagger: 16-64-32-32-5 with ReLU, logits out (no softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(64, 32)
        self.fc3, self.fc4 = nn.Linear(32, 32), nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc3(x))
        return self.fc4(x)


class DigitsCNN(nn.Module):
    """An FPGA-sized CNN for 8x8 digits (about 19k parameters): 3 convs, one pool, one fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


def build_jet_mlp(trained: bool = True) -> nn.Module:
    """The jet tagger with the shipped weights (or seeded random ones for training)."""
    torch.manual_seed(0)
    model = JetMLP()
    return (load_weights(model, "jet_mlp") if trained else model).eval()


def build_digits_cnn(trained: bool = True) -> nn.Module:
    """The digits CNN with the shipped weights (or seeded random ones for training)."""
    torch.manual_seed(0)
    model = DigitsCNN()
    return (load_weights(model, "digits_cnn") if trained else model).eval()


# --- small conv blocks -----------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) followed by BatchNorm, the unit every ResNet/MobileNet is built from."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm non-trivial statistics, so BN folding is actually tested."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))
    return model


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU, conv3x3-BN, add the (projected) identity, ReLU."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 3, stride), nn.ReLU(), _conv_bn(width, cout, 3)
        )
        needs_projection = stride != 1 or cin != cout
        self.downsample = _conv_bn(cin, cout, 1, stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.downsample(x))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand by 4, residual, ReLU."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1),
            nn.ReLU(),
            _conv_bn(width, width, 3, stride),
            nn.ReLU(),
            _conv_bn(width, cout, 1),
        )
        needs_projection = stride != 1 or cin != cout
        self.downsample = _conv_bn(cin, cout, 1, stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.downsample(x))


class ResNet(nn.Module):
    """ImageNet ResNet (torchvision layout, written out): stem, 4 stages, avgpool, fc."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], depths: list[int], classes: int = 1000
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for index, (width, depth) in enumerate(zip([64, 128, 256, 512], depths, strict=True)):
            blocks = []
            for b in range(depth):
                blocks.append(block(cin, width, stride=2 if index > 0 and b == 0 else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class MobileNetBlock(nn.Module):
    """MobileNetV2 inverted residual (expand 1x1, depthwise 3x3, project 1x1, add) + Hardswish."""

    def __init__(self, channels: int = 16, expand: int = 4) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(_conv_bn(channels, hidden, 1), nn.ReLU6())
        self.depthwise = nn.Sequential(_conv_bn(hidden, hidden, 3, groups=hidden), nn.ReLU6())
        self.project = _conv_bn(hidden, channels, 1)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.project(self.depthwise(self.expand(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1 (unless t = 1), depthwise 3x3, linear project 1x1;
    the input is added back when stride is 1 and the width is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [_conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += [_conv_bn(hidden, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018, torchvision's layout, width 1.0): 3.5 M parameters,
    300 MMAC at 224x224; ReLU6, depthwise convs, inverted residuals."""

    #: (expansion t, channels c, repeats n, first stride s) per stage, from the paper.
    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn(3, 32, 3, 2), nn.ReLU6()]
        cin = 32
        for t, c, n, s in self.STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks += [_conv_bn(cin, 1280, 1), nn.ReLU6()]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _seeded(
    factory: Callable[[], nn.Module], seed: int = 0, bn_stats: bool = True
) -> Callable[[], nn.Module]:
    """A builder that seeds torch, builds, randomizes BN statistics and returns eval mode."""

    def build() -> nn.Module:
        torch.manual_seed(seed)
        model = factory()
        with torch.no_grad():
            return (_randomize_batchnorm(model, seed) if bn_stats else model).eval()

    return build


# --- transformers ----------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention, written out op by op (or via SDPA when `sdpa`)."""

    future: torch.Tensor

    def __init__(self, d_model: int, heads: int, context: int, sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        # True above the diagonal: the future positions each query must not see.
        future = torch.ones(context, context, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("future", future, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(x).split(d_model, dim=2)
        q, k, v = (t.view(batch, seq, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
            scores = scores.masked_fill(self.future[:seq, :seq], float("-inf"))
            y = torch.softmax(scores, dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))


class GPTBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)) with a 4x GELU MLP."""

    def __init__(self, d_model: int, heads: int, context: int, sdpa: bool = False) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, context, sdpa)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A decoder-only GPT (nanoGPT layout) with learned token and position embeddings."""

    position_ids: torch.Tensor

    def __init__(
        self,
        vocab: int = 512,
        layers: int = 4,
        d_model: int = 256,
        heads: int = 4,
        context: int = 128,
        sdpa: bool = False,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(context, d_model)
        self.register_buffer("position_ids", torch.arange(context), persistent=False)
        self.blocks = nn.Sequential(
            *(GPTBlock(d_model, heads, context, sdpa) for _ in range(layers))
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tokens(idx) + self.positions(self.position_ids[: idx.shape[1]])
        return self.lm_head(self.ln_f(self.blocks(x)))


def _token_ids(length: int, vocab: int, seed: int = 0) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Example inputs: one batch of `length` seeded random int64 token ids."""
    return lambda: (
        torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(seed)),
    )


class BertLastHidden(nn.Module):
    """Wraps a Hugging Face `BertModel` so the only output is `last_hidden_state`."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids).last_hidden_state


def build_bert_encoder() -> nn.Module:
    """A 2-layer, 128-wide random BERT encoder; needs `transformers` (imported here, lazily).

    Eager attention is asked for, so the graph holds BERT's explicit attention (additive mask)
    next to tiny_gpt's masked_fill form, rather than a second SDPA call.
    """
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    return BertLastHidden(BertModel(config, add_pooling_layer=False)).eval()


class EncoderLayer(nn.Module):
    """A BERT (post-LN) encoder layer: x = ln1(x + attn(x)); x = ln2(x + ffn(x)), GELU FFN.

    Attention is written out op by op (separate q/k/v projections, head split by
    view/transpose, ``softmax(q k^T / sqrt(d)) v``): the form the FPGA engine runs as batched
    matmuls and its integer softmax, with no mask (a sentence of one segment, no padding).
    """

    def __init__(self, d_model: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Linear(ffn, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = (
            t(x).view(batch, seq, self.heads, -1).transpose(1, 2) for t in (self.q, self.k, self.v)
        )
        scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, seq, d_model)
        x = self.ln1(x + self.out(y))
        return self.ln2(x + self.ffn(x))


class Encoder(nn.Sequential):
    """A BERT-style encoder over embeddings (looked up off-chip): ``layers`` EncoderLayers."""

    def __init__(self, layers: int = 2, d_model: int = 64, heads: int = 4, ffn: int = 256) -> None:
        super().__init__(*(EncoderLayer(d_model, heads, ffn) for _ in range(layers)))


# --- op coverage: the "conv zoo" ------------------------------------------------------------


class OpsConv(nn.Module):
    """Conv and pooling variants: conv1d, dilated, strided, grouped, transposed, LRN, pools."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(4, 8, 3, padding=1)
        self.dilated = nn.Conv2d(4, 8, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.strided = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.transposed = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.lrn = nn.LocalResponseNorm(3)
        self.avgpool = nn.AvgPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.leaky = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.lrn(self.leaky(self.grouped(self.leaky(self.dilated(x)))))  # [1,8,16,16]
        up = self.upsample(self.avgpool(x))  # [1,8,16,16]
        down = self.transposed(self.strided(x))  # [1,4,16,16]
        return torch.cat([up, down], dim=1), self.leaky(self.conv1d(s))


class OpsElementwise(nn.Module):
    """Activations, unary math, comparisons with `where`, softmaxes and reductions."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8).reshape(8, 1, 1))
        self.gelu_tanh = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        smooth = torch.sigmoid(x) * F.silu(x) + torch.tanh(x) - self.gelu_tanh(x)
        rough = torch.clamp(x, -1.0, 1.0) * torch.erf(x) + torch.pow(x, 2) / 4
        y = torch.where(x > 0, smooth, rough) * self.scale
        y = y + torch.sqrt(torch.exp(-x.abs()) + 1.0) - torch.maximum(x, -y)
        y = torch.softmax(y, dim=1) + torch.log_softmax(y, dim=-1)
        pooled = y.mean(dim=(2, 3)) + y.amax(dim=(2, 3))  # [1,8]
        return y, pooled, y.sum(dim=1)


class OpsShape(nn.Module):
    """Data movement: chunk/split, pad, cat, slicing, expand, (un)squeeze, permute, reshape."""

    def forward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first, second = torch.chunk(x, 2, dim=1)  # 2 x [1,3,4,4]
        _, middle, last = torch.split(x, [1, 2, 3], dim=1)
        padded = F.pad(first, (1, 1, 2, 0), value=0.5)  # [1,3,6,6]
        joined = torch.cat(
            [(second + last)[..., 1:], middle[:, :, ::2, 1:].repeat(1, 1, 2, 1)], dim=1
        )
        broadcast = joined + y[:, :5].expand(1, 5, 4, 3)  # [1,5,4,3]
        row = y.squeeze(-1).squeeze(-1).unsqueeze(1)  # [1,1,6]
        flat = broadcast.permute(0, 2, 3, 1).reshape(1, -1, 5).transpose(1, 2)  # [1,5,12]
        return padded, torch.flatten(flat, 1) + row.sum(), row


# --- registry --------------------------------------------------------------------------------


def _registry(*cases: Case) -> dict[str, Case]:
    return {case.name: case for case in cases}


def _first_test_example(dataset: Callable[[], Split]) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Example inputs: the first test-set sample, as a batch of one."""
    return lambda: (torch.from_numpy(dataset()[2][:1]),)


CASES: dict[str, Case] = _registry(
    Case("jet_mlp", build_jet_mlp, _first_test_example(jet_split), dataset=jet_split),
    Case("digits_cnn", build_digits_cnn, _first_test_example(digits_split), dataset=digits_split),
    Case("residual_block", _seeded(lambda: BasicBlock(8, 8)), _randn((1, 8, 8, 8))),
    Case("mobilenet_block", _seeded(MobileNetBlock), _randn((1, 16, 16, 16))),
    Case("resnet18", _seeded(lambda: ResNet(BasicBlock, [2, 2, 2, 2])), _randn((1, 3, 224, 224))),
    Case(
        "resnet50",
        _seeded(lambda: ResNet(Bottleneck, [3, 4, 6, 3])),
        _randn((1, 3, 224, 224)),
        slow=True,
    ),
    Case(
        "tiny_gpt",
        _seeded(TinyGPT, bn_stats=False),
        _token_ids(128, 512),
        dynamic_dims={0: {1: ("seq", 2, 128)}},
    ),
    Case(
        "tiny_gpt_sdpa",
        _seeded(lambda: TinyGPT(layers=1, sdpa=True), bn_stats=False),
        _token_ids(128, 512),
    ),
    Case("ops_conv", _seeded(OpsConv), _randn((1, 4, 16, 16), (1, 4, 32))),
    Case("ops_elementwise", _seeded(OpsElementwise), _randn((1, 8, 6, 6))),
    Case("ops_shape", _seeded(OpsShape), _randn((1, 6, 4, 4), (1, 6, 1, 1))),
    Case("encoder", _seeded(Encoder), _randn((1, 16, 64))),
    Case("mobilenet_v2", _seeded(MobileNetV2), _randn((1, 3, 224, 224)), slow=True),
    Case("bert_encoder", build_bert_encoder, _token_ids(32, 1000), requires=("transformers",)),
)
"""Every zoo case by name."""

CONV_ZOO: tuple[str, ...] = ("ops_conv", "ops_elementwise", "ops_shape")
"""The op-coverage grab-bag: one case each for conv/pool, elementwise/reduce and shape ops."""

CASES_FOR_FPGA: list[str] = ["jet_mlp", "digits_cnn", "residual_block", "mobilenet_block"]
"""Cases small enough (in weights and MACs) for the HLS backend on a mid-size FPGA."""


def get_case(name: str) -> Case:
    """The case called `name`; a KeyError lists the known names."""
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"no zoo case {name!r}; known: {', '.join(CASES)}") from None
