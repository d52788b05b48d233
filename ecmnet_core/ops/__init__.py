"""Tensor-in, tensor-out ops: each with its PyTorch reference, its Triton kernel and the dispatcher
that picks one (dda, channels_last, edab, ss2d), plus the shared Triton guard (_triton), jit helpers
(_triton_lib) and launch tuning (tuning). Imports torch (Triton only through _triton.load_kernels),
never the model.
"""
