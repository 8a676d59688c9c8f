"""Documents added to a knowledge collection over HTTP: the body read under a size cap,
and the text taken out of it before it goes to rag.

``POST /v1/collections/{id}/documents`` takes either JSON ``{"name", "text"}``
or a multipart upload with one ``file`` part (``name`` optional, else the
file name). What may be uploaded, by file extension (else content type):

    .txt  text/plain      UTF-8 text as is
    .md   text/markdown   UTF-8 text as is (rag chunks it like text)
    .pdf  application/pdf the text of every page (``pypdf``), pages joined by
                          a blank line

Refusals, each an OpenAI-shaped error with a stable code:

    body over MAX_UPLOAD_BYTES                 413 upload_too_large
    text over rag_api.MAX_DOCUMENT_BYTES        413 document_too_large
    another type                               415 unsupported_media_type
    empty file / empty text                    400 empty_document
    not UTF-8, an unreadable PDF               400 unreadable_document
    a PDF without any text (scanned images)    400 pdf_without_text
    no ``file`` part, or JSON without fields   400 invalid_request (names the field)
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from gateway_common.errors import InvalidRequest, PayloadTooLarge
from gateway_common.rag_api import MAX_DOCUMENT_BYTES

__all__ = ["MAX_UPLOAD_BYTES", "UPLOAD_TYPES", "DocumentCreate", "Upload", "read_upload"]

log = logging.getLogger(__name__)

#: Largest request body (a file upload or JSON) the documents route reads.
MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024

#: Accepted file extension -> content type.
UPLOAD_TYPES: Final[dict[str, str]] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".pdf": "application/pdf",
}


class DocumentCreate(BaseModel):
    """The JSON form of an added document."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=1024, description="Shown in listings and sources.")
    text: str = Field(description="The document's text (UTF-8, Markdown welcome).")


@dataclass(frozen=True, slots=True)
class Upload:
    """A document ready for rag: its name and its text (within ``MAX_DOCUMENT_BYTES``)."""

    name: str
    text: str


def _empty() -> InvalidRequest:
    return InvalidRequest("The document is empty.", param="file", code="empty_document")


async def _capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(
        f"Upload too large: the limit is {MAX_UPLOAD_BYTES} bytes.", code="upload_too_large"
    )
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_UPLOAD_BYTES:
            raise too_large
        parts.append(part)
    return b"".join(parts)


def _kind(filename: str, content_type: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix in UPLOAD_TYPES:
        return suffix
    for ext, known in UPLOAD_TYPES.items():
        if content_type.split(";")[0].strip().lower() == known:
            return ext
    raise _unsupported()


def _unsupported() -> InvalidRequest:
    return InvalidRequest(
        'Unsupported document type: send JSON {"name", "text"} or upload a .txt, .md '
        "or .pdf file as multipart/form-data.",
        param="file",
        http_status=415,
        code="unsupported_media_type",
    )


def _pdf_text(data: bytes) -> str:
    # On first use, not at start: 14 MiB that only PDF uploads need (gateway_common.lean).
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, TypeError, KeyError) as exc:
        log.info("unreadable PDF upload: %r", exc)
        raise InvalidRequest(
            "The PDF could not be read.", param="file", code="unreadable_document"
        ) from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise InvalidRequest(
            "The PDF has no text to index (a scanned document needs OCR first).",
            param="file",
            code="pdf_without_text",
        )
    return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest(
            "The document is not UTF-8 text.", param="file", code="unreadable_document"
        ) from None


def _checked(name: str, text: str) -> Upload:
    if not text.strip():
        raise _empty()
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(
            f"Document text too large: the limit is {MAX_DOCUMENT_BYTES} bytes of UTF-8 text.",
            code="document_too_large",
        )
    return Upload(name=name, text=text)


async def _file_upload(request: Request, body: bytes) -> Upload:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(
            request.headers, replay(), max_part_size=MAX_UPLOAD_BYTES
        ).parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"Malformed multipart body: {exc.message}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidRequest("A multipart upload needs a 'file' part.", param="file")
    data = await file.read()
    filename = file.filename or ""
    kind = _kind(filename, file.content_type or "")
    if not data:
        raise _empty()
    text = _pdf_text(data) if kind == ".pdf" else _decode(data)
    given = form.get("name")
    name = given if isinstance(given, str) and given.strip() else PurePath(filename).name
    return _checked(name or f"document{kind}", text)


async def read_upload(request: Request) -> Upload:
    """The document a request adds: from JSON ``{"name", "text"}`` or a multipart ``file``."""
    body = await _capped_body(request)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _file_upload(request, body)
    if content_type and not content_type.startswith("application/json"):
        raise _unsupported()
    try:
        parsed = DocumentCreate.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return _checked(parsed.name, parsed.text)
