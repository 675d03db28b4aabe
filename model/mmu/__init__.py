"""The KVM x86 MMU model, one module per concern, composed into components."""

from .components import COMPONENTS, AttributesComponent, NotInProfile, build
from .sizes import OPTIONS as SIZE_OPTIONS
from .sizes import Sizes

__all__ = ["COMPONENTS", "SIZE_OPTIONS", "AttributesComponent", "NotInProfile", "Sizes", "build"]
