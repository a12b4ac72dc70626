"""Image platforms as a policy names them (`os/arch[/variant]`), checked against the values the OCI
image-index spec tells indexes to use, so a typo is a policy error with a "did you mean", not a
refusal at plan time.

The spec (opencontainers/image-spec image-index.md, `platform`) says: `os` and `architecture` SHOULD
be values the Go documentation lists for GOOS and GOARCH, `variant` values from its "Platform
Variants" table. The Go lists below are Go's own (golang/go src/internal/syslist/syslist.go, KnownOS
and KnownArch); hand-written because no Python package ships them.
"""

from __future__ import annotations

import difflib
import re

KNOWN_OS = ("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl",
            "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos")
KNOWN_ARCH = ("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle", "mips64",
              "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x",
              "sparc", "sparc64", "wasm")
# The spec's "Platform Variants" table ("…" continues a series). arm/v5 is not in the table but is
# what Debian's armel images are published as (containerd's platform normaliser knows it).
_VARIANTS = {
    "arm": re.compile(r"v[5-8]"),
    "arm64": re.compile(r"v[89](\.[0-9])?"),
    "ppc64le": re.compile(r"power[89]|power1[0-9]"),
    "riscv64": re.compile(r"rva[0-9]{2}u64"),
    "amd64": re.compile(r"v[1-4]"),
}
# What a near miss is compared with: the platforms images are actually published for.
_COMMON = ("linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5",
           "linux/ppc64le", "linux/s390x", "linux/386", "linux/riscv64", "linux/mips64le", "linux/loong64",
           "windows/amd64", "windows/arm64", "darwin/amd64", "darwin/arm64", "freebsd/amd64")


def check_image_platform(value: str) -> str:
    """`value` if it is os/arch[/variant] with values the spec lists; ValueError otherwise."""
    parts = value.split("/") if isinstance(value, str) else []
    problem = _problem(parts) if 2 <= len(parts) <= 3 else "is not os/arch[/variant]"
    if problem is None:
        return value
    near = difflib.get_close_matches(value, _COMMON, n=1, cutoff=0.7)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ValueError(f"platform '{value}' {problem}{hint}; "
                     "examples: linux/amd64, linux/arm64, linux/arm/v7 (OCI image-index spec, platform)")


def _problem(parts: list[str]) -> str | None:
    os_name, arch = parts[0], parts[1]
    if os_name not in KNOWN_OS:
        return f"has no known os '{os_name}'"
    if arch not in KNOWN_ARCH:
        return f"has no known architecture '{arch}'"
    if len(parts) == 3:
        variants = _VARIANTS.get(arch)
        if variants is None:
            return f"names a variant, and the spec lists none for {arch}"
        if not variants.fullmatch(parts[2]):
            return f"has no known {arch} variant '{parts[2]}'"
    return None
