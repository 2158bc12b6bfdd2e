"""Who a request is: the admin secret, JWT and unauthorized-role modes (part of `graphql-engine serve`)."""

import base64
import hashlib
import hmac
import json
import time

from hasura_double.config import Failure, fatal

CLAIMS = "https://hasura.io/jwt/claims"


# --- authentication ------------------------------------------------------------------
# server/src-lib/Hasura/Server/Auth.hs (setupAuthMode, getUserInfoWithExpTime_) and
# server/src-lib/Hasura/Server/Auth/JWT.hs (processJwt_, withoutAuthZ).

class Auth:
    def __init__(self, env):
        self.admin_secret = env.get("HASURA_GRAPHQL_ADMIN_SECRET") or env.get("HASURA_GRAPHQL_ACCESS_KEY")
        self.unauthorized_role = env.get("HASURA_GRAPHQL_UNAUTHORIZED_ROLE") or None
        jwt = env.get("HASURA_GRAPHQL_JWT_SECRET")
        self.jwt = None
        needs = " requires --admin-secret (HASURA_GRAPHQL_ADMIN_SECRET) or  --access-key (HASURA_GRAPHQL_ACCESS_KEY) to be set"
        # Auth.hs setupAuthMode: JWT or an unauthorized role without an admin secret is fatal.
        if jwt and not self.admin_secret:
            fatal("Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET)" + needs)
        if self.unauthorized_role and not self.admin_secret:
            fatal("Fatal Error: --unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE)" + needs +
                  " and is not allowed when --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) is set")
        if jwt:
            try:  # JWT.hs FromJSON JWTConfig; JWT/Internal.hs parseHmacKey: HS256 needs 32+ bytes
                self.jwt = json.loads(jwt)
                assert self.jwt.get("type") == "HS256", "only HS256 is implemented by the double"
                assert len(self.jwt.get("key", "")) >= 32, "Key size too small; should be atleast 32 characters"
            except (json.JSONDecodeError, AssertionError) as exc:
                fatal(f"Fatal Error: HASURA_GRAPHQL_JWT_SECRET: Invalid JWK: {exc}")

    def session(self, headers):
        """(role, error): error is a Failure with the status the metadata/query APIs use."""
        sent = headers.get("x-hasura-admin-secret") or headers.get("x-hasura-access-key")
        requested = headers.get("x-hasura-role")
        if self.admin_secret is None:  # AMNoAuth: admin unless a role header says otherwise
            return requested or "admin"
        if sent is not None:  # checkingSecretIfSent
            if not hmac.compare_digest(sent, self.admin_secret):
                # Header names are quoted since "Enforce the session variable name prefix" (98ee4e3d2,
                # 2024-07-29, before v2.43.0): Auth.hs `adminSecretHeader <<> "/" <> ...`, and
                # Data/Text/Extended.hs `(<<>) a rTxt = dquote a <> rTxt`.
                raise Failure(401, "access-denied", 'invalid "x-hasura-admin-secret"/"x-hasura-access-key"')
            return requested or "admin"
        if self.jwt is None:  # AMAdminSecret
            if self.unauthorized_role:
                return self.unauthorized_role
            raise Failure(401, "access-denied", '"x-hasura-admin-secret"/"x-hasura-access-key" required, but not found')
        auth = headers.get("authorization")  # AMAdminSecretAndJWT -> processJwt_
        if auth is None:  # withoutAuthZ
            if self.unauthorized_role:
                return self.unauthorized_role
            raise Failure(400, "invalid-headers", "Missing 'Authorization' or 'Cookie' header in JWT authentication mode")
        parts = auth.split()
        if len(parts) != 2 or parts[0] != "Bearer":
            raise Failure(400, "invalid-headers", "Malformed Authorization header")
        claims = self.verify(parts[1])
        hasura = claims.get(CLAIMS)
        if not isinstance(hasura, dict):
            raise Failure(400, "jwt-invalid-claims", f"claims key: '{CLAIMS}' not found")
        allowed = hasura.get("x-hasura-allowed-roles")
        default = hasura.get("x-hasura-default-role")
        if allowed is None:
            # Auth/JWT.hs: "JWT claim does not contain " <>> allowedRolesClaim (quoted, as above).
            raise Failure(400, "jwt-missing-role-claims", 'JWT claim does not contain "x-hasura-allowed-roles"')
        if default is None:
            raise Failure(400, "jwt-missing-role-claims", 'JWT claim does not contain "x-hasura-default-role"')
        role = requested or default
        if role not in allowed:
            raise Failure(400, "access-denied", "Your requested role is not in allowed roles")
        return role

    def verify(self, token):
        def b64(part):
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        try:
            head, body, signature = token.split(".")
            expected = hmac.new(self.jwt["key"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, b64(signature)):
                raise Failure(400, "invalid-jwt", "Could not verify JWT: JWSError JWSInvalidSignature")
            claims = json.loads(b64(body))
        except (ValueError, json.JSONDecodeError) as exc:
            raise Failure(400, "invalid-jwt", "Could not verify JWT: JWSError CompactDecodeError") from exc
        if claims.get("exp") and claims["exp"] < time.time():
            raise Failure(400, "invalid-jwt", "Could not verify JWT: JWTExpired")
        return claims
