"""subtool: MLPerf Inference from "run it" to "results published"."""

__version__ = "0.1.0"
