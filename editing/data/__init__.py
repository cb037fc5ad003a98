"""Edit datasets: read published formats into typed `EditCase`s. Data never ships with the code."""

from editing.data.cases import EditCase, LocalityCase
from editing.data.loaders import FORMATS, load_cases

__all__ = ["FORMATS", "EditCase", "LocalityCase", "load_cases"]
