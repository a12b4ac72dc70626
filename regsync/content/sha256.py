"""SHA-256 with a state that can be saved and restored (resumable uploads and downloads)."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Protocol


class Sha256(Protocol):
    """What both ResumableSha256 and hashlib's sha256 offer."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class ResumableSha256:
    """SHA-256 whose running state can be saved and restored, so a resumed upload still hashes
    every byte of the blob: OpenSSL's SHA256_CTX is fixed-size and holds no pointers.

    Same speed as hashlib (the same OpenSSL code; ctypes releases the GIL during each update).
    """

    _CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit words)
    _lib: Any = None  # ctypes.CDLL of libcrypto: its functions are looked up by name at run time

    def __init__(self, state: bytes | None = None):
        lib = self._libcrypto()
        self._ctx = ctypes.create_string_buffer(self._CTX_SIZE)
        if state is None:
            lib.SHA256_Init(self._ctx)
        elif len(state) != self._CTX_SIZE:
            raise ValueError("not a SHA-256 state")
        else:
            ctypes.memmove(self._ctx, state, self._CTX_SIZE)

    @classmethod
    def available(cls) -> bool:
        try:
            cls._libcrypto()
            return True
        except OSError:
            return False

    @classmethod
    def _libcrypto(cls):
        if cls._lib is None:
            name = ctypes.util.find_library("crypto")
            if not name:
                raise OSError("libcrypto not found")
            lib = ctypes.CDLL(name)
            lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            cls._lib = lib
        return cls._lib

    def update(self, data) -> None:
        self._lib.SHA256_Update(self._ctx, bytes(data) if not isinstance(data, bytes) else data, len(data))

    def state(self) -> bytes:
        return self._ctx.raw

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._ctx.raw, self._CTX_SIZE)  # finalising must not end the live state
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, copy)
        return out.raw.hex()
