"""A classifier behind an Amazon SageMaker real-time endpoint (``sagemaker://NAME``).

:class:`SageMakerClassifier` is an :class:`~xrobust.models.endpoint.EndpointClassifier`
whose transport is boto3's ``sagemaker-runtime`` ``invoke_endpoint``: requests are signed
with AWS Signature Version 4 from the standard AWS credential chain (environment variables,
``AWS_PROFILE`` / ``profile=``, the shared files, SSO, a role), and everything else is the
endpoint client's: the JSON body (the TF-Serving container's ``{"instances": ...}`` ->
``{"predictions": ...}`` by default; ``protocol="inputs"`` or ``"json"`` as for any
endpoint), ``layout="NHWC"``, ``input_name`` / ``output_name``, checks of the answer,
``batch_size`` rows per request, ``concurrency`` requests in flight, query counting and
budgets, and blanking of secrets in every text shown.

Retries are botocore's standard retry mode (``retries`` further attempts, so
``total_max_attempts = retries + 1``; exponential backoff with jitter) on throttling
(``ThrottlingException``), 5xx service errors and connection errors; xrobust does not retry
on top of it. ``timeout`` is botocore's connect and read timeout (per socket operation).

Queries: :attr:`~xrobust.models.classifier.Classifier.queries` counts each row once per
request that reached the model: an answer, or a ``ModelError`` (the container failed on
the rows). An attempt botocore retried is not counted again; a request refused before the
model saw it (throttled to the end, a ``ValidationError`` such as a missing endpoint,
refused or missing credentials, a connection that could not be made) is given back. Other
failures (a 5xx after the retries, a read timeout) stay counted: the model may have seen
the rows. :attr:`retried` counts botocore's retries, :attr:`calls` the HTTP answers.

Errors become one clear message: :class:`~xrobust.errors.ConfigError` for what the user
can fix in the set-up (no region, no or refused credentials, a missing endpoint or another
``ValidationError``), :class:`~xrobust.errors.ModelError` for what the endpoint did
(throttled after the retries, the container's error with its status and message, a
service failure). No credential (access key id, secret key, session token) appears in a
message, :meth:`describe`, ``repr`` or a log record: text from AWS or the container has
them blanked out, and so have botocore's own log records (its debug log prints the signed
headers) while a SageMaker classifier exists.

Example (against the local signing server of ``examples/sagemaker_local.py``):
    >>> clf = as_classifier("sagemaker://digits", spec=ds.spec, region="eu-west-1",
    ...                     endpoint_url="http://127.0.0.1:8080")  # doctest: +SKIP
    >>> clf.predict(x)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import urllib.parse
import weakref
from typing import Any

from xrobust.errors import ConfigError
from xrobust.models.endpoint import (
    V2_PROTOCOLS,
    EndpointClassifier,
    _Attempt,
    _secret_pattern,
    _TooLarge,
    safe_url,
)

__all__ = ["SCHEME", "SageMakerClassifier", "endpoint_name"]

logger = logging.getLogger(__name__)

#: the prefix of a SageMaker endpoint given as a string: ``sagemaker://ENDPOINT_NAME``.
SCHEME = "sagemaker://"
#: SageMaker's rule for endpoint names (CreateEndpoint): up to 63 letters, digits, hyphens.
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
#: error codes of AWS that mean the credentials (or their permissions) were refused.
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
        "IncompleteSignature", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
        "MissingAuthenticationToken", "AccessDeniedException", "AccessDenied",
    }
)  # fmt: skip
#: the options of EndpointClassifier that do not apply: signing replaces headers, and
#: botocore's standard mode does the backoff.
_REFUSED = {
    "headers": "requests are signed with AWS credentials from the standard chain",
    "headers_env": "requests are signed with AWS credentials from the standard chain",
    "backoff": "botocore's standard retry mode sets the backoff (retries= sets the attempts)",
    "max_backoff": "botocore's standard retry mode sets the backoff (retries= sets the attempts)",
}
#: classifiers alive now, whose credentials botocore's log records are scrubbed of.
_LIVE: weakref.WeakSet[SageMakerClassifier] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def endpoint_name(text: str) -> str:
    """The endpoint name of ``sagemaker://NAME`` (checked against SageMaker's naming rule).

    >>> endpoint_name("sagemaker://my-digits-1")
    'my-digits-1'
    """
    name = str(text)[len(SCHEME) :] if str(text).startswith(SCHEME) else str(text)
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 80 and name.isprintable() else "(a name not shown)"
        raise ConfigError(
            f"a SageMaker endpoint is sagemaker://NAME with the endpoint's name (up to 63 "
            f"letters, digits and hyphens, e.g. sagemaker://my-digits); got {shown!r} (give "
            "the region with region= / --aws-region and a local server with endpoint_url=)"
        )
    return name


class SageMakerClassifier(EndpointClassifier):
    """A model behind a SageMaker real-time endpoint (see the module docstring).

    Args:
        endpoint: ``sagemaker://NAME`` or the endpoint's name.
        region: the AWS region (default: the session's, from ``AWS_REGION`` /
            ``AWS_DEFAULT_REGION`` or the profile).
        profile: a named profile of the shared AWS files (default: ``AWS_PROFILE`` or the
            default chain).
        endpoint_url: another SageMaker-runtime URL (a VPC endpoint, or a local
            SageMaker-compatible server such as ``http://127.0.0.1:8080``).
        content_type: the request's Content-Type, a JSON media type (the body is JSON).
        accept: the Accept header (what the container should answer).
        target_model: the model of a multi-model endpoint (``TargetModel``).
        target_variant: the production variant to invoke (``TargetVariant``).
        timeout: botocore's connect and read timeout, seconds.
        retries: further attempts in botocore's standard retry mode.
        concurrency: requests in flight at once (the connection pool holds as many).
        **options: the endpoint client's body and answer options (``protocol``,
            ``input_name``, ``output_name``, ``signature_name``, ``layout``, ``request_key``,
            ``response_key``, ``request_fields``) and the classifier's (``output``,
            ``name``, ``input_shape``, ``num_classes``, ``bounds``, ``batch_size``,
            ``query_budget``).

    Raises:
        ConfigError: boto3 missing, a bad name or option, no region, no credentials.
    """

    source = "sagemaker"

    def __init__(
        self,
        endpoint: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        target_model: str | None = None,
        target_variant: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        concurrency: int = 4,
        **options: Any,
    ) -> None:
        self.endpoint_name = endpoint_name(endpoint)
        if str(options.get("protocol", "")).lower() in V2_PROTOCOLS:
            raise ConfigError(
                f"protocol {options['protocol']!r} (the Open Inference Protocol) is not offered for SageMaker endpoints (its readiness and "
                "metadata calls are not SageMaker calls); use protocol 'instances' (the "
                "TF-Serving container's JSON, the default), 'inputs' or 'json' with "
                "request_key / response_key"
            )
        _check_options(options)
        for key in sorted(set(options) & set(_REFUSED)):
            raise ConfigError(
                f"{key}= does not apply to a SageMaker endpoint: {_REFUSED[key]} "
                "(AWS_PROFILE / profile=, environment variables, SSO, a role)"
            )
        self.content_type = _json_media_type(content_type, "content_type")
        self.accept = _json_media_type(accept, "accept")
        self.profile, self.target_model, self.target_variant = profile, target_model, target_variant
        self._credentials: Any = None
        self._session = _session(region, profile)
        self.region: str = self._session.region_name or ""
        if not self.region:
            raise ConfigError(
                f"no AWS region for the SageMaker endpoint {self.endpoint_name!r}: pass region= "
                "(--aws-region on the command line) or set AWS_REGION / AWS_DEFAULT_REGION"
            )
        self._require_credentials()
        self._given_url = None if endpoint_url is None else str(endpoint_url)
        self._client = self._make_client(timeout, retries, concurrency)
        with _LIVE_LOCK:
            _LIVE.add(self)
        _guard_botocore_logs()
        base = str(self._client.meta.endpoint_url).rstrip("/")
        path = urllib.parse.quote(self.endpoint_name, safe="")
        options.setdefault("name", f"{SCHEME}{self.endpoint_name}")
        super().__init__(
            f"{base}/endpoints/{path}/invocations",
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            **options,
        )

    # ------------------------------------------------------------------ set-up
    def _require_credentials(self) -> None:
        """The credentials of the chain, resolved now: none is a clear error before work."""
        import botocore.exceptions as bx

        try:
            creds = self._session.get_credentials()
        except bx.BotoCoreError as exc:
            raise ConfigError(
                f"the AWS credentials for the SageMaker endpoint {self.endpoint_name!r} could "
                f"not be read: {self._clean(str(exc))} ({type(exc).__name__})"
            ) from None
        if creds is None:
            raise ConfigError(_no_credentials(self.endpoint_name))
        self._credentials = creds

    def _make_client(self, timeout: Any, retries: Any, concurrency: Any) -> Any:
        from botocore.config import Config

        from xrobust.models.endpoint import _count, _positive

        n_retries = _count(retries, "retries", minimum=0)
        config = Config(
            retries={"mode": "standard", "total_max_attempts": n_retries + 1},
            connect_timeout=_positive(timeout, "timeout"),
            read_timeout=_positive(timeout, "timeout"),
            max_pool_connections=max(10, _count(concurrency, "concurrency", minimum=1)),
            user_agent_extra="xrobust",
        )
        url = self._given_url
        if url is not None and (not url.startswith(("http://", "https://")) or "@" in url):
            raise ConfigError(
                f"endpoint_url must be http(s)://host[:port] without user info, got "
                f"{safe_url(url)!r}"
            )
        from botocore.exceptions import InvalidRegionError

        try:
            return self._session.client("sagemaker-runtime", endpoint_url=url, config=config)
        except InvalidRegionError:
            raise ConfigError(
                f"{self.region[:40]!r} is not an AWS region name (e.g. eu-west-1, us-east-1)"
            ) from None
        except ValueError as exc:  # botocore: "Invalid endpoint: ..."
            raise ConfigError(
                f"endpoint_url {safe_url(url or '')!r} is not usable: {self._clean(str(exc))}"
            ) from None

    # ------------------------------------------------------------------ what it is
    def describe(self) -> dict[str, Any]:
        d = super().describe()
        for key in ("headers", "headers_env"):
            d.pop(key, None)
        d.update(
            endpoint_name=self.endpoint_name,
            region=self.region,
            endpoint_url=None if self._given_url is None else safe_url(self._given_url),
            content_type=self.content_type,
            accept=self.accept,
            signing="AWS SigV4 (standard credential chain)",
            retry_mode="botocore standard",
        )
        for key in ("profile", "target_model", "target_variant"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def close(self) -> None:
        """Close the client's connections (a later query opens new ones)."""
        super().close()
        client = getattr(self, "_client", None)
        if client is not None and hasattr(client, "close"):
            client.close()

    # ------------------------------------------------------------------ the wire
    def _request(self, body: bytes) -> tuple[bytes, int, str | None]:
        """One ``invoke_endpoint`` (botocore retries inside): the answer's body, the bytes
        of :attr:`_in_flight` it holds and its content type; or :class:`_Attempt` (a failure
        the base reports, refunding when ``sent`` is false) / ConfigError (refunded)."""
        import botocore.exceptions as bx

        kwargs: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "Body": body,
            "ContentType": self.content_type,
            "Accept": self.accept,
        }
        if self.target_model is not None:
            kwargs["TargetModel"] = self.target_model
        if self.target_variant is not None:
            kwargs["TargetVariant"] = self.target_variant
        try:
            resp = self._client.invoke_endpoint(**kwargs)
        except bx.ClientError as exc:
            self._note_attempts(exc.response, answered=True)
            raise self._client_error(exc) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
            raise ConfigError(_no_credentials(self.endpoint_name, type(exc).__name__)) from None
        except bx.BotoCoreError as exc:
            raise self._transport_error(exc) from None
        self._note_attempts(resp, answered=True)
        data, held = self._read_body(resp)
        return data, held, resp.get("ContentType")

    def _note_attempts(self, resp: dict[str, Any], answered: bool) -> None:
        meta = resp.get("ResponseMetadata") or {}
        extra = int(meta.get("RetryAttempts") or 0)
        with self._lock:
            self.retried += extra
            self.calls += extra + (1 if answered else 0)

    def _read_body(self, resp: dict[str, Any]) -> tuple[bytes, int]:
        """The streamed answer, read in pieces within the shared byte budget."""
        import botocore.exceptions as bx

        stream = resp["Body"]
        headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        length = str(headers.get("content-length", "")).strip()
        budget, held, pieces, total = self._in_flight, 0, [], 0
        try:
            if length.isdigit():
                if int(length) > budget.cap:
                    raise _TooLarge(alone=True)
                if not budget.take(int(length)):
                    raise _TooLarge(alone=False)
                held = int(length)
            while piece := stream.read(1 << 16):
                pieces.append(piece)
                total += len(piece)
                if total > budget.cap:
                    raise _TooLarge(alone=True)
                if total > held:
                    if not budget.take(total - held):
                        raise _TooLarge(alone=False)
                    held = total
        except _TooLarge as exc:
            budget.give(held)
            stream.close()
            raise _Attempt(self._too_large(exc.alone), retry=False, sent=True) from None
        except (bx.BotoCoreError, OSError) as exc:
            budget.give(held)
            stream.close()
            raise self._transport_error(exc) from None
        return b"".join(pieces), held

    # ------------------------------------------------------------------ errors
    def _where(self) -> str:
        return f"the SageMaker endpoint {self.endpoint_name!r} ({self.region})"

    def _client_error(self, exc: Any) -> Exception:
        """An error AWS (or the container) answered, as :class:`_Attempt` / ConfigError."""
        err = exc.response.get("Error") or {}
        code = str(err.get("Code") or "")
        message = self._clean(str(err.get("Message") or ""), 300) or "(no message)"
        meta = exc.response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        shown_code = self._clean(code, 60)
        if code == "ModelError":
            original = exc.response.get("OriginalStatusCode")
            text = exc.response.get("OriginalMessage") or err.get("Message") or ""
            log = exc.response.get("LogStreamArn")
            return _Attempt(
                f"the model container behind {self._where()} failed"
                + (f" with HTTP {int(original)}" if isinstance(original, int) else "")
                + f": {self._clean(str(text), 300) or '(no message)'}"
                + (f" (its log: {self._clean(str(log), 200)})" if log else ""),
                retry=False,
                sent=True,
            )
        if _is_throttling(code, status):
            return _Attempt(
                f"{self._where()} throttled the requests ({shown_code or status}: {message}) "
                f"through {attempts} attempt(s) of botocore's standard retry mode; lower "
                "concurrency= (--endpoint-concurrency), raise retries=, or ask AWS for a "
                "higher invocation quota",
                retry=False,
                sent=False,
            )
        if code == "ModelNotReadyException":
            return _Attempt(
                f"the model of {self._where()} is not ready ({message}): a serverless variant "
                "is still being provisioned or a multi-model endpoint is loading it; wait and "
                "run again",
                retry=False,
                sent=False,
            )
        if code in _CREDENTIAL_CODES:
            return ConfigError(
                f"AWS refused the credentials for {self._where()} ({shown_code}: {message}); "
                "check which credentials are in use (aws sts get-caller-identity), that they "
                "are current, and that they may call sagemaker:InvokeEndpoint on it"
            )
        if code == "ValidationError":
            return ConfigError(
                f"SageMaker refused the request to the endpoint {self.endpoint_name!r} in "
                f"{self.region} (ValidationError: "
                f"{message}); check the endpoint's name and region (aws sagemaker "
                f"describe-endpoint --endpoint-name {self.endpoint_name} --region "
                f"{self.region}) and that a request of {self.batch_size} rows stays under "
                "SageMaker's payload limit (lower batch_size= / --endpoint-batch-size)"
            )
        return _Attempt(
            f"{self._where()} failed ({shown_code or 'HTTP ' + str(status)}: {message}) "
            f"after {attempts} attempt(s)",
            retry=False,
            sent=True,
        )

    def _transport_error(self, exc: Exception) -> _Attempt:
        """A connection or timeout failure (after botocore's retries)."""
        import botocore.exceptions as bx

        text = self._clean(str(exc), 300)
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
            return _Attempt(
                f"cannot reach {self._where()} at {self.url}: {text}", retry=False, sent=False
            )
        if isinstance(exc, bx.ReadTimeoutError):
            return _Attempt(
                f"{self._where()} did not answer within the timeout of {self.timeout:g} s",
                retry=False,
                sent=True,
            )
        return _Attempt(
            f"the request to {self._where()} failed: {type(exc).__name__}: {text}",
            retry=False,
            sent=True,
        )

    # ------------------------------------------------------------------ secrets
    def _secret_values(self) -> list[str]:
        """The credentials in use (access key id, secret key, session token), read without
        a refresh (this runs inside botocore's logging, refreshes included)."""
        creds = self._credentials
        if creds is None:
            return []
        held = vars(creds)  # RefreshableCredentials: _access_key ... (its properties refresh)
        values = [held.get(f"_{k}", held.get(k)) for k in ("access_key", "secret_key", "token")]
        return [str(v) for v in values if v]


def _check_options(options: dict[str, Any]) -> None:
    """Refuse options that neither SageMaker nor the endpoint client takes (did you mean?)."""
    import difflib
    import inspect

    params = {
        *inspect.signature(EndpointClassifier.__init__).parameters,
        *inspect.signature(SageMakerClassifier.__init__).parameters,
    }
    known = sorted(params - {"self", "url", "endpoint", "unknown", "options", "datatype"})
    unknown = sorted(set(options) - set(known) - set(_REFUSED))
    if unknown:
        hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        shown = ", ".join(
            repr(k) + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
        )
        raise ConfigError(
            f"option(s) {shown} do not apply to a SageMaker endpoint; it takes "
            + ", ".join(k for k in known if k not in _REFUSED)
        )


def _json_media_type(value: Any, what: str) -> str:
    """A JSON media type (``application/json``, ``application/x-json; charset=utf-8``...)."""
    text = str(value).strip()
    media = text.partition(";")[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9.+-]+/([a-z0-9.+-]*[+.-])?json", media) or not text.isascii():
        raise ConfigError(
            f"{what} must be a JSON media type such as application/json (the body xrobust "
            f"sends and reads is JSON), got {text[:60]!r}"
        )
    if any(c in text for c in "\r\n\0"):
        raise ConfigError(f"{what} has a line break or NUL in it")
    return text


def _session(region: str | None, profile: str | None) -> Any:
    try:
        import boto3
        import botocore.exceptions as bx
    except ModuleNotFoundError:
        raise ConfigError(
            "SageMaker endpoints need boto3: pip install 'xrobust[sagemaker]'"
        ) from None
    try:
        return boto3.Session(region_name=region, profile_name=profile)
    except bx.ProfileNotFound:
        raise ConfigError(
            f"the AWS profile {profile!r} is not in the AWS config files (aws configure list-"
            "profiles shows the ones there)"
        ) from None
    except bx.BotoCoreError as exc:
        raise ConfigError(f"the AWS configuration cannot be read: {exc}") from None


def _no_credentials(name: str, why: str = "") -> str:
    return (
        f"no AWS credentials for the SageMaker endpoint {name!r}"
        + (f" ({why})" if why else "")
        + ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for "
        "temporary ones), choose a profile with AWS_PROFILE / profile= (--aws-profile), or "
        "sign in with aws configure / aws sso login"
    )


def _is_throttling(code: str, status: Any) -> bool:
    from botocore.retries import standard

    codes = getattr(standard.ThrottledRetryableChecker, "_THROTTLED_ERROR_CODES", ())
    return (
        code in codes
        or code in ("ThrottlingException", "Throttling")
        or (status == 429 and code != "ModelNotReadyException")
    )


# ---------------------------------------------------------------------- botocore's logs
class _Redact(logging.Filter):
    """Blanks the credentials of every live classifier out of a log record (botocore logs
    the signed request, session token included, at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _LIVE_LOCK:
            live = list(_LIVE)
        values = tuple(v for clf in live for v in clf._secret_values())
        pattern = _pattern(values)
        if pattern is not None:
            try:
                text = record.getMessage()
            except Exception:  # a record whose arguments do not format: leave it
                return True
            if pattern.search(text):
                record.msg, record.args = pattern.sub("<redacted>", text), None
        return True


@functools.lru_cache(maxsize=8)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    return _secret_pattern(list(values))


_FILTER = _Redact()


def _guard_botocore_logs() -> None:
    """Attach :data:`_FILTER` to every botocore / boto3 / urllib3 logger there is now (a
    logger's filters see the records it creates; these modules are imported by now)."""
    names = [
        n
        for n in list(logging.Logger.manager.loggerDict)
        if n.split(".")[0] in ("botocore", "boto3", "urllib3", "s3transfer")
    ]
    for n in ["botocore", "boto3", "urllib3", *names]:
        lg = logging.getLogger(n)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
