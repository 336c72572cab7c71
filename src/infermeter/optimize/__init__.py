"""``infermeter optimize``: make new models from a model, and send each down the
same measurement path with an accuracy evaluation beside it.

Modules (imported only by the command that needs them; nothing heavy here):

- ``candidates`` — which candidates to try for a model on this machine, and why some are skipped.
- ``recipe``     — steps applied in order to make a candidate; recipe YAML files.
- ``worker``     — one candidate built, evaluated and measured in a fresh process.
- ``run``        — ``optimize()``: the baseline, then the candidates one by one, within a time budget.
- ``summary``    — speed-ups with CIs, verdicts, the Pareto front and the choice, from stored results.
- ``schema``     — steps, recipes, candidate records and the run's report, as data.
- ``evaluate`` / ``metrics`` — eval data, metrics (accuracy, top5, f1, mse, mae or ``module:function``)
  and fidelity to the original model's outputs when there are no labels.
- ``pareto``     — the speed/accuracy frontier, the choice within a budget, and verdicts.
- ``quantize``   — int8 through ONNX Runtime's quantizer (dynamic, static QDQ) and torchao.
- ``precision``  — bf16/fp16 support from CPU flags (or the GPU), and casting.
- ``prune``      — magnitude pruning (PyTorch and ONNX) and structured pruning (torch-pruning).
- ``distill``    — shallow students and training on a teacher's outputs.
- ``export``     — PyTorch to ONNX, ONNX Runtime graph optimisation, saving PyTorch candidates.
- ``compile``    — ``torch.compile`` with frozen weights.
"""
