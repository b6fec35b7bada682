"""bench: CPU inference benchmarks for transformer models, isolated, pinned and checked against eager fp32."""

__version__ = "0.1.0"
