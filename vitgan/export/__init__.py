"""Sharing a trained run: Hub-style model folders and ONNX files (`vitgan export`).

- ``hub_folder``: ``write_hub_folder(source, folder, what=("G", "D"))``: config.json,
  model.safetensors, the model card, a sample grid (through ``vitgan.models.hub.HubMixin``).
- ``onnx_file``: ``export_onnx(G, path)`` and ``max_difference(path, G, z)`` (onnxruntime).

What is exported comes from ``vitgan.runs.source.open_run`` (a run folder, a checkpoint, an
earlier export); below ``commands``.
"""
