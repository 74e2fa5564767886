"""Principals and the exchange's own access tokens.

Every request passes one authentication step that yields a :class:`Principal`: who is
calling (client), on behalf of which hospital, with which SMART v2 scopes and for what
purpose of use. Today the exchange signs its own short-lived tokens (HS256, ``hie token``);
SMART Backend Services (private_key_jwt) will mint the same Principal later, so the routes
and the audit trail do not change when it lands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import jwt

from hie.outcome import Forbidden, Unauthorized

ISSUER = "hie"
AUDIENCE = "hie-fhir"
ALL_SCOPES = ("system/*.cruds",)


@dataclass(frozen=True)
class Principal:
    client_id: str
    hospital_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    purpose: str = "TREAT"  # HL7 v3 PurposeOfUse: TREAT, HOPERAT, PATRQT ...

    def allows(self, resource_type: str, interaction: str) -> bool:
        """SMART v2 scopes: ``system/Observation.rs``; ``*`` for any type; v1 read/write too."""
        for scope in self.scopes:
            ctx, _, rest = scope.partition("/")
            if ctx not in ("system", "user") or "." not in rest:
                continue
            rtype, perms = rest.split(".", 1)
            if rtype not in ("*", resource_type):
                continue
            perms = {"read": "rs", "write": "cud", "*": "cruds"}.get(perms, perms)
            if interaction in perms:
                return True
        return False

    def require(self, resource_type: str, interaction: str) -> None:
        if not self.allows(resource_type, interaction):
            raise Forbidden(
                f"The token's scopes do not allow {interaction!r} on {resource_type} "
                f"(needs system/{resource_type}.{interaction})"
            )


def mint(
    secret: str,
    client_id: str,
    *,
    hospital_id: str | None = None,
    scopes: tuple[str, ...] = ALL_SCOPES,
    roles: tuple[str, ...] = (),
    lifetime_s: int = 3600,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": client_id,
        "iat": issued,
        "exp": issued + lifetime_s,
        "scope": " ".join(scopes),
        "roles": list(roles),
    }
    if hospital_id:
        claims["hospital"] = hospital_id
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: str, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized(
            "This endpoint needs a bearer token (Authorization: Bearer …); see docs/hospital-it.md",
            headers={"WWW-Authenticate": 'Bearer realm="hie"'},
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Use the Bearer scheme", headers={"WWW-Authenticate": 'Bearer realm="hie"'}
        )
    principal, expires = _decoded(secret, token.strip())
    if expires is not None and time.time() >= expires:
        raise Unauthorized(
            "The token has expired", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    return principal


@lru_cache(maxsize=4096)
def _decoded(secret: str, token: str) -> tuple[Principal, float | None]:
    """A verified token's Principal and expiry, cached by the raw token string.

    Verifying the HS256 signature and the claims cost about 0.1 ms of every request; a
    clinician's client sends the same token for its whole life. Only tokens that verified are
    cached (a refused one raises, and ``lru_cache`` keeps nothing); expiry is checked again on
    every use by :func:`verify`, with PyJWT's rule (expired once ``now >= exp``).
    """
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "The token has expired", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(
            f"The token is not valid: {exc}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    principal = Principal(
        client_id=str(claims.get("sub", "")),
        hospital_id=claims.get("hospital"),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        roles=frozenset(claims.get("roles") or []),
    )
    exp = claims.get("exp")
    return principal, (float(exp) if isinstance(exp, int | float) else None)
