"""The double's server options, CORS, and how it reports errors (part of `graphql-engine serve`).

Options are read as server/src-lib/Hasura/Server/Init/Env.hs reads them; CORS follows
Hasura/Server/Cors.hs and Middleware.hs; API errors have Hasura's JSON shape
(hasura-base Hasura/Base/Error.hs). Upstream tag: SOURCE_TAG in __init__.py.
"""

import json
import re
import sys
import time


def log(log_type, **detail):
    print(json.dumps({"type": log_type, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "level": "info",
                      "detail": detail}), flush=True)


def fatal(message):
    """How graphql-engine reports a configuration it refuses: one line on stderr, exit 1."""
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def option_fatal(message):
    """How graphql-engine refuses a server option it cannot read: server/src-lib/Hasura/App.hs
    (parseArgs: throwErrExit InvalidEnvironmentVariableOptionsError) and server/src-exec/Main.hs
    (`BC.putStrLn msg >> Sys.exitFailure`): the message on stdout, exit 1."""
    print(message, flush=True)
    sys.exit(1)


def env_value(env, name, read, default):
    """server/src-lib/Hasura/Server/Init/Env.hs (considerEnv, withOptionDefault): an unset
    variable gives the default; a value `read` refuses stops the server naming the variable."""
    if name not in env:
        return default
    try:
        return read(env[name])
    except ValueError as exc:
        option_fatal(f"Fatal Error:- Environment variable {name}: {exc}")


def read_bool(text):
    """Init/Env.hs (instance FromEnv Bool): case-insensitive true/t/yes/y and false/f/no/n."""
    if text.lower() in ("true", "t", "yes", "y"):
        return True
    if text.lower() in ("false", "f", "no", "n"):
        return False
    raise ValueError(' Not a valid boolean text. True values are ["true","t","yes","y"] and  False values are '
                     '["false","f","no","n"]. All values are case insensitive')


# server/src-lib/Hasura/Server/Init/Config.hs (data API) and Init/Env.hs (FromEnv (HashSet API)).
API_NAMES = ("metadata", "graphql", "pgdump", "developer", "config", "metrics")
# server/src-lib/Hasura/Server/Init/Arg/Command/Serve.hs (enabledAPIsOption._default)
DEFAULT_APIS = "metadata,graphql,pgdump,config"


def read_apis(text):
    """Init/Env.hs: split on ",", strip, compare upper-cased; any other word (an empty value
    too) is refused. The double serves `metadata` (/v1/metadata, /v2/query) and `graphql`
    (/v1/graphql); the other groups it knows by name but serves nothing for them."""
    apis = set()
    for word in text.split(","):
        if word.strip().lower() not in API_NAMES:
            raise ValueError("Only expecting list of comma separated API types "
                             "metadata,graphql,pgdump,developer,config,metrics")
        apis.add(word.strip().lower())
    return apis


class Cors:
    """CORS as server/src-lib/Hasura/Server/Cors.hs (readCorsDomains, inWildcardList) and
    Hasura/Server/Middleware.hs (corsMiddleware) answer it; configuration from
    Init.hs (mkCorsConfig) and Init/Arg/Command/Serve.hs (corsDomainOption, disableCorsOption,
    wsReadCookieOption).

    HASURA_GRAPHQL_DISABLE_CORS=true wins over HASURA_GRAPHQL_CORS_DOMAIN; the domain list
    defaults to "*" (every origin). Otherwise it is comma separated, each entry scheme://host
    with an optional :port, or scheme://*.host[:port] where the wildcard stands for exactly
    one leftmost label. An entry without a scheme stops the server."""

    def __init__(self, env):
        self.disabled = env_value(env, "HASURA_GRAPHQL_DISABLE_CORS", read_bool, False)
        self.allow_all, self.fqdns, self.wildcards = False, set(), set()
        if not self.disabled:
            self.allow_all, self.fqdns, self.wildcards = env_value(
                env, "HASURA_GRAPHQL_CORS_DOMAIN", self.read_domains, (True, set(), set()))
        ws_read_cookie = env_value(env, "HASURA_GRAPHQL_WS_READ_COOKIE", read_bool, False)
        if ws_read_cookie and not self.disabled:  # Init.hs mkCorsConfig
            option_fatal("HASURA_GRAPHQL_WS_READ_COOKIE can only be used when CORS is disabled")

    @staticmethod
    def _scheme(text):
        """Cors.hs schemeParser: one or more alphanumerics or + . - followed by "://"."""
        end = 0
        while end < len(text) and (text[end].isalnum() or text[end] in "+.-"):
            end += 1
        if end == 0 or not text.startswith("://", end):
            return None, text
        return text[:end + 3], text[end + 3:]

    @staticmethod
    def _host_port(text):
        """Cors.hs hostPortParser, portParser: text up to a ":" and the digits after it (what
        follows them is ignored); without a ":" the whole rest is the host, port and all."""
        host, colon, rest = text.partition(":")
        if not colon or not host:
            return text, None
        digits = re.match(r"\d*", rest).group(0)
        return host, int(digits) if digits else None

    @classmethod
    def _domain(cls, entry):
        scheme, rest = cls._scheme(entry)
        if scheme is None:
            raise ValueError(f"invalid domain: '{entry}'. All domains should have scheme + (optional wildcard) "
                             "host + (optional port)")
        if rest.startswith("*."):  # wildcardDomainParser
            host, port = cls._host_port(rest[2:])
            return None, (scheme, host, port)
        host, port = cls._host_port(rest)  # fqdnParser: scheme <> host <> ":port"
        return scheme + host + (f":{port}" if port is not None else ""), None

    @classmethod
    def read_domains(cls, text):
        if text == "*":
            return True, set(), set()
        fqdns, wildcards = set(), set()
        for entry in (part.strip() for part in text.split(",")):
            fqdn, wildcard = cls._domain(entry)
            if fqdn is not None:
                fqdns.add(fqdn)
            else:
                wildcards.add(wildcard)
        return False, fqdns, wildcards

    def allows(self, origin):
        """Middleware.hs handleCors: no Origin, or CORS disabled, or an origin not listed: the
        request goes on untouched and its answer carries no CORS header."""
        if origin is None or self.disabled:
            return False
        if self.allow_all or origin in self.fqdns:
            return True
        # Cors.hs originParser: drop everything up to the first "." after the scheme
        scheme, rest = self._scheme(origin)
        if scheme is None or "." not in rest:
            return False
        host, port = self._host_port(rest.split(".", 1)[1])
        return (scheme, host, port) in self.wildcards

    @staticmethod
    def headers(origin):
        """Middleware.hs mkCorsHeaders: the origin echoed, credentials allowed, every method."""
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,OPTIONS"),
                ("Access-Control-Expose-Headers", "X-Hasura-Query-Cache-Key,X-Hasura-Query-Family-Cache-Key,Warning")]

    @staticmethod
    def preflight_headers(requested):
        """Middleware.hs mkPreFlightHeaders (sent before the CORS headers)."""
        return [("Access-Control-Max-Age", "1728000"), ("Access-Control-Allow-Headers", requested or ""),
                ("Content-Length", "0"), ("Content-Type", "text/plain charset=UTF-8")]


class Failure(Exception):
    """An API error: HTTP status, Hasura error code, message, JSON path."""

    def __init__(self, status, code, message, path="$", internal=None):
        super().__init__(message)
        self.status, self.code, self.message, self.path, self.internal = status, code, message, path, internal

    def body(self):
        # hasura-base Hasura/Base/Error.hs (ToJSON QErr, toEncoding): "error" first, then "path", "code"
        body = {"error": self.message, "path": self.path, "code": self.code}
        if self.internal is not None:
            body["internal"] = self.internal
        return body
