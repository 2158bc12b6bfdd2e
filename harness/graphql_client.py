"""GraphQL through gql: a `gql.Client` on `RequestsHTTPTransport`, and Hasura's answer as data or errors.

gql raises TransportQueryError (its `.errors` are the GraphQL errors) when the
answer holds errors, and hides the HTTP status when the body is a GraphQL
answer (gql/transport/requests.py `_prepare_result`); `answer()` records the
status through a requests response hook, passed as a transport kwarg (which
`_prepare_request` hands to requests), so tests can still assert it.
"""

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport


def client(url, headers=None, statuses=None, timeout=10):
    """A gql Client posting to url; each HTTP status is appended to `statuses` when a list is given."""
    extra = {}
    if statuses is not None:
        extra["hooks"] = {"response": [lambda response, *args, **kwargs: statuses.append(response.status_code)]}
    transport = RequestsHTTPTransport(url=url, headers=headers or {}, timeout=timeout, **extra)
    return Client(transport=transport, fetch_schema_from_transport=False)


@dataclass
class Answer:
    """One GraphQL request's outcome: the HTTP statuses seen, and the data or the errors."""

    statuses: list = field(default_factory=list)
    data: dict | None = None
    errors: list | None = None

    def body(self):
        """The answer as Hasura's JSON body: {"data": ...} or {"errors": [...]}."""
        return {"errors": self.errors} if self.errors is not None else {"data": self.data}

    def first_error(self):
        """(extensions.code, message) of the first error, or (None, None) without errors."""
        error = (self.errors or [{}])[0]
        return error.get("extensions", {}).get("code"), error.get("message")


def answer(url, query, headers=None):
    """Execute query (a string) through gql; return an Answer (errors from TransportQueryError.errors)."""
    result = Answer()
    try:
        result.data = client(url, headers, statuses=result.statuses).execute(gql(query))
    except TransportQueryError as error:
        result.errors, result.data = error.errors, error.data
    return result


def hs256_jwt(key, claims):
    """A JWT of claims signed HS256 with key (RFC 7519; what Hasura's HS256 JWT mode verifies)."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head, body = b64(b'{"alg":"HS256","typ":"JWT"}'), b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def user_claims(role="user", user_id="1"):
    """Hasura's claims namespace for a JWT whose default and only role is role."""
    return {"sub": user_id, "https://hasura.io/jwt/claims": {"x-hasura-default-role": role,
                                                             "x-hasura-allowed-roles": [role],
                                                             "x-hasura-user-id": user_id}}
