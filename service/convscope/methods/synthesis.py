"""The optimization methods' public names in one place, for core and the servicer."""

from convscope.methods.adversarial import AdversarialOptions, AdversarialResult, adversarial
from convscope.methods.optimize import StepProgress

__all__ = ["AdversarialOptions", "AdversarialResult", "StepProgress", "adversarial"]
