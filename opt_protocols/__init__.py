"""opt-protocols: optimal training protocols from the order-parameter ODEs of learning models."""
__version__ = "0.1.0"

from .model import Model, list_models, load_model
from .protocol import Protocol
from .sgd import SGDResult, simulate_sgd
from .simulate import Trajectory, simulate
from .problem import Budget
from .solution import Solution
from .solve import solve
from .results import load
from .validate import validate

__all__ = ["Model", "Protocol", "Trajectory", "list_models", "load_model", "simulate", "simulate_sgd", "SGDResult", "Budget", "Solution", "solve", "load", "validate", "__version__"]
