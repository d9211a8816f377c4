"""Native CPU kernels: XLA FFI custom calls built on first use with the machine's C++ compiler (build.py)."""
