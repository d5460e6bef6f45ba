"""The torch side of compression: IR graphs as trainable torch modules, and what trains them.

- ``module``: ``to_torch(graph)`` runs a float IR graph as a ``torch.nn.Module`` and writes
  trained weights back (rules per op in ``ops``, registered in the leaf ``registry``);
- ``distill``: knowledge distillation (``compiler.distill``) and the training loop helpers;
- ``prune``: importance scores and prune-then-fine-tune flows on top of the pruning passes;
- ``fake_quant``: training through the integer weights the quantize pass will produce.

torch is imported lazily everywhere here: importing these modules needs no torch.
"""
