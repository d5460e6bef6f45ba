"""Hardware-aware search: fit a model to an FPGA budget, and architecture search.

``compiler.search(model, target, budget, data, labels)`` searches per-layer pruning ratios,
bit widths and reuse factors (``compiler.hwsearch.fit``, strategy in ``loop``);
``compiler.nas(model, target, budget, data, labels)`` trains an elastic-width/depth supernet
and searches its subnets against the target's cost model (``compiler.hwsearch.nas``). Both
price designs with the HLS backend's own estimates (``compiler.hwsearch.cost``) and measure
accuracy with the reference interpreter. torch is imported inside functions only.
"""

from compiler.hwsearch.config import CompileConfig, is_config, load_config
from compiler.hwsearch.space import Budget

__all__ = ["Budget", "CompileConfig", "is_config", "load_config"]
