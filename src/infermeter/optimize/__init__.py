"""``infermeter optimize``: make new models from a model, and send each down the
same measurement path with an accuracy evaluation beside it.

Modules (imported only by the command that needs them; nothing heavy here).
Written so far: evaluate, metrics, pareto, quantize (ONNX Runtime int8), export.
Still to write: prune, distill, compile, and the ``optimize`` command that runs
the candidates in isolated processes.

- ``evaluate`` — eval data (``--eval data.npz``), model outputs, metrics
  (accuracy, top5, f1, mse, mae or ``module:function``) and fidelity to the
  original model's outputs when there are no labels.
- ``pareto``   — the latency/size/accuracy frontier of the candidates.
- ``metrics``  — the metrics themselves, each with its direction.
- ``quantize`` — dynamic and static (QDQ) int8 through ONNX Runtime's quantizer.
- ``prune``    — magnitude and structured pruning candidates.
- ``distill``  — smaller students trained on the model's outputs.
- ``export``   — PyTorch to ONNX, and ONNX Runtime graph optimisation.
- ``compile``  — ``torch.compile`` and other compiled candidates.

Each candidate is evaluated in its own process and compared with the baseline.
"""
