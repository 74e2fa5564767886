"""The one error the profile package raises: a profile or terminology file hie cannot enforce.

It is raised while loading (``Profiles.load``), never while validating a resource: a profile
the validator does not fully understand must stop the exchange from starting, rather than
be enforced in part and look enforced in full.
"""

from __future__ import annotations


class ProfileError(Exception):
    """A file in ``fhir_profiles/`` is malformed, or uses a construct hie does not enforce."""
