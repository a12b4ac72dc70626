"""The layer reader the image gate uses (regsync/vulns/tarstream.py, layers.py) on tars written by GNU
tar and by Python's tarfile in each tar format: long names, ustar prefixes, members bigger than its
read buffer, hard links, whiteouts, gzip in many members (as eStargz writes it), zstd."""

import gzip
import io
import os
import subprocess
import tarfile

import pytest

from tests.fixtures.policies import run_cli
from tests.test_vulnerabilities_images import BASE, OS_RELEASE, PYTHON, dpkg_status, layer, osv_db  # noqa: F401 (a fixture)

DEEP = ("usr/local/lib/python3.11/site-packages/" + "a-rather-long-vendored-folder-name/" * 3
        + "mkdocs-1.2.2.dist-info/METADATA")
METADATA = b"Metadata-Version: 2.1\nName: mkdocs\nVersion: 1.2.2\n\n"


def contents_of(*blobs: bytes):
    from regsync.vulns.layers import ImageContents

    contents = ImageContents()
    for blob in blobs:
        contents.add_layer(io.BytesIO(blob))
    return contents


def by_tarfile(blob: bytes) -> dict[str, bytes]:
    """What tarfile reads of the same members: the reference the hand-written reader must agree with."""
    from regsync.vulns.layers import _WANTED

    found = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for member in tar:
            name = os.path.normpath(member.name).lstrip("/")
            if member.isfile() and _WANTED.fullmatch(name):
                found[name] = tar.extractfile(member).read()
    return found


def gnu_tar(tmp_path, files: dict[str, bytes], *options: str) -> bytes:
    """A tar of `files` written by GNU tar (members sorted by name), hard links as `a -> b` values."""
    root = tmp_path / "root"
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data.startswith(b"-> "):
            os.link(root / data[3:].decode(), path)
        else:
            path.write_bytes(data)
    done = subprocess.run(["tar", "-c", "-C", str(root), "--sort=name", "--owner=0", "--group=0", *options, "."],
                          capture_output=True, check=True, timeout=60)
    return done.stdout


FILLER = os.urandom(3 << 19) + b"odd"     # 1.5 MiB + 3 bytes: skipped across the reader's 1 MiB buffer


@pytest.mark.parametrize("tar_format", ["gnu", "posix", "ustar", "oldgnu"])
def test_gnu_tar_long_names_and_big_members_in_each_format(tmp_path, tar_format):
    if tar_format == "ustar":   # ustar holds a long name as a prefix (at most 155) and a name (at most 100)
        deep = DEEP.replace("a-rather-long-vendored-folder-name/" * 3, "a-rather-long-vendored-folder-name/")
    else:
        deep = DEEP
    status = dpkg_status("1.2.1-2.2+wheezy2") * 400      # ~300 kB, read across buffer refills
    files = {"a/filler.bin": FILLER, "etc/os-release": OS_RELEASE, deep: METADATA, "var/lib/dpkg/status": status}
    blob = gnu_tar(tmp_path, files, f"--format={tar_format}")
    assert by_tarfile(blob) == {name: data for name, data in files.items() if name != "a/filler.bin"}
    for compressed in (blob, gzip.compress(blob, mtime=0)):
        contents = contents_of(compressed)
        assert contents.files == by_tarfile(blob)
        assert ("PyPI", "mkdocs", "1.2.2") in contents.packages()[0]


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_python_tarfile_formats_with_headers_only_types_between(tar_format):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, kind in (("usr", tarfile.DIRTYPE), ("usr/bin/python", tarfile.SYMTYPE), ("dev/null", tarfile.CHRTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "python3" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info)
        deep = DEEP if tar_format != tarfile.USTAR_FORMAT else DEEP.replace("a-rather-long-vendored-folder-name/", "", 2)
        for name, data in {"a/filler.bin": FILLER, "etc/os-release": OS_RELEASE, deep: METADATA}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    contents = contents_of(gzip.compress(blob, mtime=0))
    assert contents.files == by_tarfile(blob) and len(contents.files) == 2
    assert ("PyPI", "mkdocs", "1.2.2") in contents.packages()[0]


def test_a_package_named_by_a_hard_link_stays_when_a_later_layer_deletes_the_linked_file(tmp_path):
    """uv (and conda) hard-link site-packages to their cache: GNU tar (sorted, as docker's tar writer
    walks) writes the cache's copy first, the site-packages one as a link; a later layer's
    `rm -rf /root/.cache` whites out the copy. The link still names the installed package."""
    cached = "root/.cache/uv/archive-v0/x1/mkdocs-1.2.2.dist-info/METADATA"
    installed = "usr/local/lib/python3.11/site-packages/mkdocs-1.2.2.dist-info/METADATA"
    first = gnu_tar(tmp_path, {"etc/os-release": OS_RELEASE, cached: METADATA, installed: ("-> " + cached).encode()})
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getmember("./" + installed).islnk()   # the layer really holds it as a hard link
    later = layer({"root/.wh..cache": b""})
    contents = contents_of(gzip.compress(first, mtime=0), later)
    assert installed in contents.files and cached not in contents.files
    assert ("PyPI", "mkdocs", "1.2.2") in contents.packages()[0]


def test_an_opaque_whiteout_hides_only_lower_layers_wherever_it_stands_in_its_tar():
    """OCI image-spec layer.md: the opaque marker applies to lower layers, 'regardless of the
    ordering in which the whiteout file was encountered'."""
    upgraded = {"usr/lib/python3/dist-packages/mkdocs-1.2.4.dist-info/METADATA":
                b"Metadata-Version: 2.1\nName: mkdocs\nVersion: 1.2.4\n\n",
                "usr/lib/python3/dist-packages/.wh..wh..opq": b""}    # after its sibling, as the spec allows
    found = contents_of(layer(PYTHON), layer(upgraded)).packages()[0]
    assert found == [("PyPI", "mkdocs", "1.2.4")]


def test_a_layer_gzipped_in_many_members_is_read_to_its_end():
    """eStargz writes each tar entry as its own gzip member; a reader that stops at the first
    member's end sees only the first file and reports the rest of the image as empty."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in BASE.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    blob = b"".join(gzip.compress(raw[at:at + 1024], mtime=0) for at in range(0, len(raw), 1024))
    contents = contents_of(blob)
    assert set(contents.files) == set(BASE)
    assert ("Debian:7", "nginx", "1.2.1-2.2+wheezy2") in contents.packages()[0]


def test_scan_reads_a_zstd_layer_file(tmp_path, osv_db):  # noqa: F811
    plain = tmp_path / "layer.tar"
    plain.write_bytes(gzip.decompress(layer(BASE)))
    subprocess.run(["zstd", "-q", "--rm", str(plain)], check=True, timeout=60)
    result = run_cli("scan", "--db", osv_db, tmp_path / "layer.tar.zst")
    assert result.exit_code == 3, result.output
    assert "DSA-3029-1" in result.output and "1.2.1-2.2+wheezy3" in result.output


def test_a_damaged_tar_header_is_an_error_not_an_empty_layer():
    from regsync.vulns.tarstream import TarError

    blob = bytearray(gzip.decompress(layer(BASE)))
    blob[1024 + 20] ^= 0xFF    # the second member's name (os-release's header and one block of data first)
    with pytest.raises(TarError, match="checksum"):
        contents_of(bytes(blob))


@pytest.mark.parametrize("compression", ["isal", "zlib", "zstd", "bz2", "xz", "none"])
def test_each_compression_is_told_by_its_first_bytes_and_reads_the_same(monkeypatch, compression):
    import bz2
    import lzma
    import sys

    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    blob = gzip.decompress(layer({"a/filler.bin": FILLER, **BASE}))
    packed = {"isal": gzip.compress, "zlib": gzip.compress, "zstd": zstd.compress, "bz2": bz2.compress,
              "xz": lzma.compress, "none": bytes}[compression](blob)
    if compression == "zlib":
        monkeypatch.setitem(sys.modules, "isal", None)   # as on a platform python-isal has no wheel for
    contents = contents_of(packed)
    assert contents.files == by_tarfile(blob) == BASE


def test_headers_and_data_cut_across_reads_of_any_size():
    """A decompressor's readinto returns what it has: headers and data straddle the reader's buffer."""
    from regsync.vulns.tarstream import TarStream

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes, step: int):
            self._data, self._at, self._step = data, 0, step

        def readable(self):
            return True

        def readinto(self, buffer):
            piece = self._data[self._at:self._at + min(self._step, len(buffer))]
            buffer[:len(piece)] = piece
            self._at += len(piece)
            return len(piece)

    blob = gzip.decompress(layer({"a/filler.bin": FILLER[:70001], **BASE, "b/more.bin": FILLER[:513]}))
    for step in (1, 511, 4099):
        tar = TarStream(Trickle(blob, step), buffer_size=1536)
        found = {}
        for member in tar.members():
            found[member.name] = tar.read(len(member.name)) if member.name != "a/filler.bin" else b""
        assert found == {"a/filler.bin": b"", "etc/os-release": OS_RELEASE[:14],
                         "var/lib/dpkg/status": dpkg_status("1.2.1-2.2+wheezy2")[:19], "b/more.bin": FILLER[:10]}
