"""nbmlops: the package behind the notebooks.

Notebooks hold parameters and calls; the logic lives here.
"""

__version__ = "0.1.0"
