"""Gradient-flow diagnostics: see vanishing and exploding gradients while a model trains.

    monitor = GradientMonitor(model)        # a deepgrad nn.Module or a torch.nn.Module
    for X, y in batches:
        loss = loss_fn(model(X), y)
        opt.zero_grad(); loss.backward(); opt.step()
        monitor.step(loss)                  # after backward (and after opt.step for updates)
    for f in monitor.diagnose():
        print(f)

The package reads as three parts, each importing only the ones after it:
- capture: ``capture_deepgrad`` (GradientMonitor: module forward hooks and the fused Dense
  layer's documented taps on deepgrad models, native statistics) and ``capture_torch``
  (TorchGradientMonitor: torch module hooks, zero-copy native norms; torch imported only when a
  torch model is monitored);
- ``sinks``: CSV/JSON files, plots (through deepgrad.plot) and the TensorBoard stream;
- ``core``: thresholds, findings, the diagnosis of a history, the bounded window and the
  max_records cap, plain-data export; framework-free (no torch, no backend).
"""
from .capture_deepgrad import GradientMonitor
from .capture_torch import TorchGradientMonitor
from .core import Finding, GradientWarning, Thresholds, diagnose
from .sinks import history_to_csv

__all__ = ["GradientMonitor", "TorchGradientMonitor", "Thresholds", "Finding",
           "GradientWarning", "diagnose", "history_to_csv"]
