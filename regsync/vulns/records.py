"""What the package records an image holds name, as OSV names it (docs/vulnerabilities.md): the
OS packages of dpkg and apk databases, Python distributions, conda environments, and the language
packages installed where their package managers put them — npm's `node_modules/<name>/package.json`
(`@scope/<name>` too, at any depth), Composer's `vendor/composer/installed.json`, RubyGems'
`specifications/<name>-<version>.gemspec`.

The layer reader (vulns/layers.py) keeps of a language package's file only what names it (`kept`):
a package.json or installed.json is cut to its names and versions as it is read, a gemspec to its
file name, so an image with 10,000 npm packages costs a few hundred kilobytes, not their manifests.
"""

from __future__ import annotations

import json
import posixpath
import re
from email.parser import BytesHeaderParser

MAX_LANGUAGE = 20_000      # npm and RubyGems packages kept per layer, and counted per image
NPM = re.compile(r"(.*/)?node_modules/(@[^/]+/)?[^@./][^/]*/package\.json")
COMPOSER = re.compile(r"(.*/)?vendor/composer/installed\.json")
GEMSPEC = re.compile(r"(.*/)?specifications/(default/)?[^/]+\.gemspec")
# a gem platform (Gem::Platform: cpu-os[-version]), after the version in a gemspec's file name
_PLATFORM = re.compile(r"(x86_64|x86|i[3-6]86|x64|universal|arm64|aarch64|arm\w*|powerpc\w*|ppc\w*|s390x?|sparc\w*"
                       r"|java|jruby|dalvik\d*|mswin\w*|mingw\w*|cygwin|darwin\w*|linux\w*|\w*bsd\w*|solaris\w*"
                       r"|wasm\w*)(-.*)?")
_GEM_VERSION = re.compile(r"\d+(\.[0-9A-Za-z]+)*")


def kept(path: str, data: bytes) -> bytes:
    """What is kept of a file the reader wants: a language package's names and versions, as the
    JSON the readers below read (a package.json, a Composer 2 installed.json of only those fields);
    `{"unreadable": why}` when it is not one; a gemspec's name says it all; other files as they are."""
    if GEMSPEC.fullmatch(path):
        return b""
    is_npm = NPM.fullmatch(path)
    if not is_npm and not COMPOSER.fullmatch(path):
        return data
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return json.dumps({"unreadable": f"not JSON ({str(exc)[:80]})"}).encode()
    if is_npm:
        if not isinstance(document, dict):
            return json.dumps({"unreadable": "not a JSON object"}).encode()
        return json.dumps({k: document[k] for k in ("name", "version") if isinstance(document.get(k), str)}).encode()
    listed = document.get("packages") if isinstance(document, dict) else document   # Composer 2, Composer 1
    if not isinstance(listed, list):
        return json.dumps({"unreadable": "neither Composer 1's list nor Composer 2's packages"}).encode()
    return json.dumps({"packages": [{k: p[k] for k in ("name", "version") if isinstance(p.get(k), str)}
                                    for p in listed if isinstance(p, dict)]}).encode()


def language_packages(files: dict[str, bytes]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The npm, Packagist and RubyGems packages the image's files name; not-covered lines for files
    that name none and for packages past MAX_LANGUAGE (an image of many layers may hold more)."""
    found: dict[tuple[str, str, str], None] = {}
    not_covered: list[str] = []
    counted = 0
    for path, data in sorted(files.items()):
        if NPM.fullmatch(path):
            named = _json(data)
            if named.get("name") and named.get("version"):
                counted += 1
                if counted <= MAX_LANGUAGE:
                    found[("npm", str(named["name"]), str(named["version"]))] = None
            else:
                not_covered.append(f"npm package {path}: {named.get('unreadable') or 'its package.json names no name and version'}")
        elif COMPOSER.fullmatch(path):
            named = _json(data)
            if "unreadable" in named or not isinstance(named.get("packages"), list):
                not_covered.append(f"Composer {path}: {named.get('unreadable') or 'not read'}")
                continue
            for package in named["packages"]:
                if isinstance(package, dict) and package.get("name") and package.get("version"):
                    counted += 1
                    if counted <= MAX_LANGUAGE:
                        found[("Packagist", str(package["name"]), str(package["version"]))] = None
                else:
                    not_covered.append(f"Composer {path}: a package without a name and version")
        elif GEMSPEC.fullmatch(path):
            gem = gem_of(posixpath.basename(path).removesuffix(".gemspec"))
            if gem is None:
                not_covered.append(f"gem {path}: its file name is not <name>-<version>.gemspec")
                continue
            counted += 1
            if counted <= MAX_LANGUAGE:
                found[("RubyGems", *gem)] = None
    if counted > MAX_LANGUAGE:
        not_covered.append(f"{counted - MAX_LANGUAGE} more npm, Composer and RubyGems packages than the "
                           f"{MAX_LANGUAGE} read (not checked)")
    return list(found), not_covered


def _json(data: bytes) -> dict:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": "not JSON"}
    return document if isinstance(document, dict) else {"unreadable": "not a JSON object"}


def gem_of(stem: str) -> tuple[str, str] | None:
    """(name, version) from a gemspec's file name, `<name>-<version>[-<platform>]`: the first
    hyphen followed by a version and then nothing or a platform (`nokogiri-1.15.4-x86_64-linux`,
    `ruby-2captcha-1.0.0`), else the last hyphen whose rest starts with a digit."""
    parts = stem.split("-")
    for at in range(1, len(parts)):
        rest = "-".join(parts[at + 1:])
        if _GEM_VERSION.fullmatch(parts[at]) and (not rest or _PLATFORM.fullmatch(rest)):
            return "-".join(parts[:at]), parts[at]
    for at in range(len(parts) - 1, 0, -1):
        if parts[at][:1].isdigit():
            return "-".join(parts[:at]), "-".join(parts[at:])
    return None


def os_ecosystem(release: dict[str, str]) -> str | None:
    """The OSV ecosystem of the image's OS: Debian:12, Ubuntu:22.04:LTS, Alpine:v3.18; Wolfi and
    Chainguard, rolling distributions OSV names without a release."""
    distro, version = release.get("ID", ""), release.get("VERSION_ID", "")
    if distro in ("wolfi", "chainguard"):
        return distro.capitalize()
    if not version:
        return None
    if distro == "debian":
        return f"Debian:{version}"
    if distro == "ubuntu":
        return f"Ubuntu:{version}" + (":LTS" if "LTS" in release.get("VERSION", "") else "")
    if distro == "alpine":
        return "Alpine:v" + ".".join(version.split(".")[:2])
    return None


def dpkg(files: list[bytes]):
    """(source package, source version) of each installed package: OSV's Debian and Ubuntu records
    name source packages (Source: "name (version)" when it differs from the binary's)."""
    from debian.deb822 import Deb822

    for data in files:
        for paragraph in Deb822.iter_paragraphs(data.decode("utf-8", "replace").splitlines()):
            if "installed" not in paragraph.get("Status", "install ok installed").split():
                continue
            name, version = paragraph.get("Package"), paragraph.get("Version")
            if not name or not version:
                continue
            source = paragraph.get("Source", "").strip()
            if source:
                source_name, _, rest = source.partition(" ")
                version = rest.strip("() ") or version
                name = source_name
            yield name, version


def apk(data: bytes):
    """(origin package, version) of each installed package: OSV's Alpine records (Alpine's secdb) name
    the aports origin (`o:`), which a subpackage such as libcrypto3 (origin openssl) shares (Wolfi's
    name the origin and its subpackages); its own name (`P:`) where the database gives no origin."""
    name = origin = version = None
    for line in data.decode("utf-8", "replace").splitlines() + [""]:
        if line.startswith("P:"):
            name = line[2:]
        elif line.startswith("o:"):
            origin = line[2:]
        elif line.startswith("V:"):
            version = line[2:]
        elif not line.strip():
            if (origin or name) and version:
                yield origin or name, version
            name = origin = version = None


def python_distribution(data: bytes) -> tuple[str, str] | None:
    headers = BytesHeaderParser().parsebytes(data)
    return (headers["Name"], headers["Version"]) if headers.get("Name") and headers.get("Version") else None


def conda_record(data: bytes) -> tuple[str, str] | None:
    """A conda package that is not also a Python distribution (those are read from their dist-info)."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    if not isinstance(record, dict) or not record.get("name"):
        return None
    if any(".dist-info/" in str(f) for f in record.get("files") or []):
        return None
    return str(record["name"]), str(record.get("version", ""))
