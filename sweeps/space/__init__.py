"""The search-space language."""
from sweeps.space.model import (METHOD, METRICS, Branch, Objective, Param, Resources, SearchSpace, SpaceError,
                                load_space)

__all__ = ["METHOD", "METRICS", "Branch", "Objective", "Param", "Resources", "SearchSpace", "SpaceError",
           "load_space"]
