"""OpenAI's BPE encodings, built from files shipped in this package (no download, ever).

tiktoken fetches its encoding files from a public blob store the first time
one is used; gateway processes run where nothing but the package index is
reachable. So the two encodings current OpenAI models use ship here as
package data (``o200k_base.tiktoken.gz``, ``cl100k_base.tiktoken.gz``, the
files tiktoken downloads, gzipped) and ``Encodings`` builds the
``tiktoken.Encoding`` from them itself, with the split pattern and special
tokens of ``tiktoken_ext.openai_public`` (a unit test holds the two to be
equal). The SHA-256 of each decompressed file must equal tiktoken's own
``expected_hash``; a file that does not is refused (``EncodingError``).

Loading is lazy and costs real time and memory (o200k_base: ~0.5 s of CPU
and tens of MiB), so a process that never counts a long prompt never pays
it; ``Encodings.get`` blocks and is meant to be called from a worker
thread. ``tokenizer_for`` names the encoding of a catalog model from
tiktoken's model table, importing tiktoken only when first called.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "TOKENIZERS",
    "EncodingError",
    "Encodings",
    "TokenizerName",
    "tokenizer_for",
]

#: The encodings shipped in this package.
TokenizerName = Literal["o200k_base", "cl100k_base"]
TOKENIZERS: tuple[TokenizerName, ...] = get_args(TokenizerName)

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

#: Provider kinds whose models are OpenAI's (and so named in tiktoken's model table).
_OPENAI_KINDS = frozenset({"openai", "azure_openai"})


class EncodingError(RuntimeError):
    """A shipped encoding file is missing or is not the file tiktoken expects."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """What ``tiktoken_ext.openai_public`` builds one encoding from (its file's hash too)."""

    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_SPECS: Mapping[TokenizerName, _Spec] = MappingProxyType(
    {
        "o200k_base": _Spec(
            sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            pat_str="|".join(
                [
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""\p{N}{1,3}""",
                    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                    r"""\s*[\r\n]+""",
                    r"""\s+(?!\S)""",
                    r"""\s+""",
                ]
            ),
            special_tokens=MappingProxyType({_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018}),
        ),
        "cl100k_base": _Spec(
            sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
            special_tokens=MappingProxyType(
                {
                    _ENDOFTEXT: 100257,
                    _FIM_PREFIX: 100258,
                    _FIM_MIDDLE: 100259,
                    _FIM_SUFFIX: 100260,
                    _ENDOFPROMPT: 100276,
                }
            ),
        ),
    }
)


def _mergeable_ranks(name: TokenizerName) -> dict[bytes, int]:
    """The BPE ranks of ``name`` from its shipped file; ``EncodingError`` if the file is wrong."""
    spec = _SPECS[name]
    try:
        packed = resources.files(__package__).joinpath(f"{name}.tiktoken.gz").read_bytes()
        contents = gzip.decompress(packed)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise EncodingError(f"the {name} encoding file cannot be read: {exc}") from exc
    actual = hashlib.sha256(contents).hexdigest()
    if actual != spec.sha256:
        raise EncodingError(
            f"the {name} encoding file has SHA-256 {actual}, not tiktoken's {spec.sha256}"
        )
    # The format tiktoken.load.load_tiktoken_bpe reads: "<base64 token> <rank>" per line.
    return {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in contents.splitlines() if line)
    }


class Encodings:
    """The shipped encodings, each built on first ``get`` and kept for the process's life.

    Thread-safe: concurrent first calls build an encoding once. A built
    ``tiktoken.Encoding`` may be used from any thread (its encoders release
    the GIL). One instance per process, made by its composition root.
    """

    def __init__(self) -> None:
        self._built: dict[TokenizerName, tiktoken.Encoding] = {}
        self._lock = threading.Lock()

    def loaded(self) -> frozenset[TokenizerName]:
        """The names built so far (for tests and for memory accounting)."""
        return frozenset(self._built)

    def get(self, name: TokenizerName) -> tiktoken.Encoding:
        """The encoding ``name``, built now if it is not yet: blocking, call it off the loop.

        Raises ``EncodingError`` if its shipped file is missing or altered.
        """
        found = self._built.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._built.get(name)
            if found is None:
                import tiktoken  # here, not at import: a process that never counts never loads it

                spec = _SPECS[name]
                found = tiktoken.Encoding(
                    name=name,
                    pat_str=spec.pat_str,
                    mergeable_ranks=_mergeable_ranks(name),
                    special_tokens=dict(spec.special_tokens),
                )
                self._built[name] = found
            return found


def _known(model: str) -> TokenizerName | None:
    """The shipped encoding tiktoken's model table gives ``model``, or None."""
    from tiktoken.model import encoding_name_for_model

    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return None
    if name == "o200k_harmony":  # gpt-oss: o200k_base's ranks plus chat-format special tokens
        name = "o200k_base"
    return name if name in _SPECS else None  # type: ignore[return-value]


def tokenizer_for(
    explicit: str | None, public: str, deployments: Iterable[tuple[str, str]]
) -> TokenizerName | None:
    """The encoding that counts a catalog model's prompts exactly, or None (estimate them).

    ``explicit`` is the catalog's ``tokenizer`` field and wins when set
    (``"estimate"``: None). Otherwise each deployment, given as
    ``(provider kind, provider model)``, must be an OpenAI model that
    tiktoken's model table knows (by its provider model name, else, for an
    Azure deployment name, by the public name) and all must agree: a model
    that may fail over to another family is estimated.
    """
    if explicit is not None:
        return explicit if explicit in _SPECS else None  # type: ignore[return-value]
    found: set[TokenizerName | None] = set()
    for kind, model in deployments:
        if kind not in _OPENAI_KINDS:
            return None
        found.add(_known(model) or _known(public))
    if len(found) != 1:
        return None
    return found.pop()
