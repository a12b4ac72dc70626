"""A target environment as pip would see it on that machine: its wheel tags, in priority order,
and its marker values. Computed for the *target* interpreter and platform, never the running one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging import tags

from regsync.kinds.package.policy import Environment, PackageRule

_ARCH_MACHINE = {"x86_64": "x86_64", "aarch64": "aarch64", "amd64": "AMD64", "arm64": "arm64", "win32": "x86",
                 "universal2": "arm64", "i686": "i686", "ppc64le": "ppc64le", "s390x": "s390x"}


def expand_platform(platform: str) -> list[str]:
    """'manylinux_2_28_x86_64' → every older manylinux it implies (as pip's --platform does)."""
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if match:
        major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        out = []
        for glibc in range(minor, 4, -1):
            out.append(f"manylinux_{major}_{glibc}_{arch}")
            if glibc in legacy:
                out.append(f"{legacy[glibc]}_{arch}")
        return out
    match = re.fullmatch(r"musllinux_(\d+)_(\d+)_(\w+)", platform)
    if match:
        return [f"musllinux_{match.group(1)}_{m}_{match.group(3)}" for m in range(int(match.group(2)), -1, -1)]
    match = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", platform)
    if match:
        return list(tags.mac_platforms((int(match.group(1)), int(match.group(2))), match.group(3)))
    return [platform]


@dataclass(frozen=True)
class TargetEnvironment:
    python: str            # "3.10"
    platform: str          # "manylinux_2_28_x86_64"
    implementation: str = "cp"
    abi: str | None = None

    @classmethod
    def of(cls, env: Environment) -> "TargetEnvironment":
        return cls(env.python, env.platform, env.implementation, env.abi)

    @property
    def label(self) -> str:
        return f"{self.implementation}{self.python.replace('.', '')}-{self.platform}"

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    @property
    def full_version(self) -> str:
        return self.python if self.python.count(".") >= 2 else f"{self.python}.0"

    @cached_property
    def tag_rank(self) -> dict[tags.Tag, int]:
        """Supported tags, most preferred first (lower rank wins), exactly packaging's ordering."""
        platforms = expand_platform(self.platform)
        interpreter = f"{self.implementation}{self.version[0]}{self.version[1]}"
        if self.implementation == "cp":
            found = list(tags.cpython_tags(self.version, [self.abi] if self.abi else None, platforms))
        else:
            found = list(tags.generic_tags(interpreter, [self.abi] if self.abi else None, platforms))
        found += list(tags.compatible_tags(self.version, interpreter, platforms))
        return {tag: rank for rank, tag in enumerate(dict.fromkeys(found))}

    @cached_property
    def markers(self) -> dict[str, str]:
        system = ("Windows" if self.platform.startswith("win") else
                  "Darwin" if self.platform.startswith("macosx") else "Linux")
        match = re.fullmatch(r"(?:(?:many|musl)linux_\d+_\d+|macosx_\d+_\d+|manylinux\d+|linux|win)_(.+)", self.platform)
        arch = match.group(1) if match else self.platform
        return {
            "python_version": f"{self.version[0]}.{self.version[1]}", "python_full_version": self.full_version,
            "implementation_name": "cpython" if self.implementation == "cp" else self.implementation,
            "platform_python_implementation": "CPython" if self.implementation == "cp" else self.implementation,
            "implementation_version": self.full_version,
            "os_name": "nt" if system == "Windows" else "posix",
            "sys_platform": {"Windows": "win32", "Darwin": "darwin"}.get(system, "linux"),
            "platform_system": system, "platform_machine": _ARCH_MACHINE.get(arch, arch),
            "platform_release": "", "platform_version": "",
        }


DEFAULT_ENVIRONMENT = ("3.11", "manylinux_2_28_x86_64")


def rule_environments(rule: PackageRule) -> list[TargetEnvironment]:
    """The environments a package rule resolves for (one default when it names none)."""
    return [TargetEnvironment.of(env) for env in rule.environments] or [TargetEnvironment(*DEFAULT_ENVIRONMENT)]
