"""Image in, mask out, for every deployment backend: checkpoints, SegmentationEngine (PyTorch,
onnxruntime, TensorRT), ONNX export, image reading and mask colouring. Import the modules
(ecmnet_core.runtime.engine, .checkpoint, ...); this package imports nothing itself.
"""
