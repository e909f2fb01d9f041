"""opt-protocols: optimal training protocols from the order-parameter ODEs of learning models."""
from .model import Model, list_models, load_model
from .protocol import Protocol
from .sgd import SGDResult, simulate_sgd
from .simulate import Trajectory, simulate

__version__ = "0.1.0"

__all__ = ["Model", "Protocol", "Trajectory", "list_models", "load_model", "simulate", "simulate_sgd", "SGDResult", "__version__"]
