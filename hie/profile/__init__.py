"""hie's profile validator: ``Profiles.load(fhir_profiles_dir).validate(resource_json)``.

Modules: ``profiles`` (load + validate), ``differential`` (StructureDefinition → element
tree), ``element`` (the tree and its walk), ``rules`` (binding, fixed/pattern, reference,
invariant checks), ``invariant`` (the FHIRPath subset), ``terminology`` (ValueSet
expansion), ``wellformed`` (FHIR JSON rules for every resource), ``errors``.
"""

from hie.profile.errors import ProfileError
from hie.profile.profiles import Profiles

__all__ = ["ProfileError", "Profiles"]
