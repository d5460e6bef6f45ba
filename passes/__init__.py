"""Graph passes: one per file, registered in the explicit PASSES dict.

A pass is a frozen dataclass with a kebab-case ``name`` and ``run(graph, ctx) -> bool``
(``ctx``: the run's ``compiler.context.PassContext``); ``compiler.pass_manager`` builds
pipelines from these names. Keep the dict alphabetical, one
import per pass module.
"""

from __future__ import annotations

from passes.bias_correct import BiasCorrect
from passes.calibrate import Calibrate
from passes.convert_layout import ConvertLayout
from passes.cse import CommonSubexpressions
from passes.dce import DeadCodeElimination
from passes.fold_batchnorm import FoldBatchNorm
from passes.fold_constants import FoldConstants
from passes.fuse_bias_act import FuseBiasAct
from passes.fuse_residual import FuseResidual
from passes.mixed_precision import MixedPrecision
from passes.prune_2to4 import Prune2to4
from passes.prune_channels import PruneChannels
from passes.prune_magnitude import PruneMagnitude
from passes.quant_report import QuantReportPass
from passes.quantize import Quantize
from passes.quantize_llm import QuantizeLLM
from passes.quantize_rewrite import QuantizeRewrite
from passes.recognize_attention import RecognizeAttention
from passes.recognize_gelu import RecognizeGelu
from passes.recognize_layernorm import RecognizeLayerNorm
from passes.remove_identity import RemoveIdentity
from passes.simplify_shapes import SimplifyShapes
from passes.specialize_shapes import SpecializeShapes

PASSES: dict[str, type] = {
    "bias-correct": BiasCorrect,
    "calibrate": Calibrate,
    "convert-layout": ConvertLayout,
    "cse": CommonSubexpressions,
    "dce": DeadCodeElimination,
    "fold-batchnorm": FoldBatchNorm,
    "fold-constants": FoldConstants,
    "fuse-bias-act": FuseBiasAct,
    "fuse-residual": FuseResidual,
    "mixed-precision": MixedPrecision,
    "prune-2to4": Prune2to4,
    "prune-channels": PruneChannels,
    "prune-magnitude": PruneMagnitude,
    "quant-report": QuantReportPass,
    "quantize": Quantize,
    "quantize-llm": QuantizeLLM,
    "quantize-rewrite": QuantizeRewrite,
    "recognize-attention": RecognizeAttention,
    "recognize-gelu": RecognizeGelu,
    "recognize-layernorm": RecognizeLayerNorm,
    "remove-identity": RemoveIdentity,
    "simplify-shapes": SimplifyShapes,
    "specialize-shapes": SpecializeShapes,
}
"""Pass name -> pass class (a frozen dataclass whose fields are its options)."""

__all__ = ["PASSES"]
