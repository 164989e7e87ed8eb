"""Sharing a trained run: Hub-style model folders and ONNX files (`vitgan export`).

- ``source``: ``load_source(run_or_export_folder)`` -> the EMA generator, the discriminator, the
  config, training options and metric rows.
- ``hub_folder``: ``write_hub_folder(source, folder, what=("G", "D"))``: config.json,
  model.safetensors, the model card, a sample grid (through ``vitgan.models.hub.HubMixin``).
- ``onnx_file``: ``export_onnx(G, path)`` and ``max_difference(path, G, z)`` (onnxruntime).

Above ``train`` (it reads checkpoints and run folders), below ``commands``.
"""
