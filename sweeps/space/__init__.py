"""The search-space language."""
from sweeps.space.model import (METHOD, METRICS, TEST_METRICS, VAL_METRICS, Branch, Objective, Param, Resources,
                                SearchSpace, SpaceError, load_space)

__all__ = ["METHOD", "METRICS", "TEST_METRICS", "VAL_METRICS", "Branch", "Objective", "Param", "Resources",
           "SearchSpace", "SpaceError", "load_space"]
