"""The optimization methods' public names in one place, for core and the servicer."""

from convscope.methods.adversarial import AdversarialOptions, AdversarialResult, adversarial
from convscope.methods.inversion import InversionOptions, InversionResult, invert
from convscope.methods.optimize import StepProgress
from convscope.methods.visualization import VisualizationOptions, VisualizationResult, visualize

__all__ = [
    "AdversarialOptions",
    "AdversarialResult",
    "InversionOptions",
    "InversionResult",
    "StepProgress",
    "VisualizationOptions",
    "VisualizationResult",
    "adversarial",
    "invert",
    "visualize",
]
