"""Errors a web application reports as the client's (HTTP 4xx with the message), not as its own.

MONAI Label's server (FastAPI) lets an exception of a bundle's transforms or network loading
propagate, and the client sees "Internal Server Error" (500) without the message. A FastAPI
``HTTPException`` raised there is answered with its status and ``{"detail": message}``.
:func:`as_http_error` makes an error both: still the library's exception (``except ValueError``
works everywhere) and, where FastAPI is importable, an ``HTTPException``.
"""

from __future__ import annotations

__all__ = ["as_http_error"]


def as_http_error(error: Exception, status_code: int = 422) -> Exception:
    """``error`` as an instance of its own class and of FastAPI's ``HTTPException`` (when FastAPI is
    importable; else ``error`` itself), with ``detail`` = ``str(error)``.

    Example::

        >>> e = as_http_error(ValueError("case.dcm: no pixel spacing"), 422)
        >>> isinstance(e, ValueError), str(e)
        (True, 'case.dcm: no pixel spacing')
    """
    try:
        from fastapi import HTTPException
    except ImportError:  # no web server around
        return error
    message = str(error)

    class _HTTPError(type(error), HTTPException):  # type: ignore[misc]
        def __str__(self) -> str:
            return message

    _HTTPError.__name__ = _HTTPError.__qualname__ = f"HTTP{type(error).__name__}"
    http = _HTTPError.__new__(_HTTPError)
    http.__dict__.update(getattr(error, "__dict__", {}))
    http.args = error.args
    http.status_code, http.detail, http.headers = int(status_code), message, None
    return http
