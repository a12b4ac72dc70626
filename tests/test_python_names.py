"""A wheel's or sdist's file name is read in one place (content/python_names.py), below the kinds:
the package kind and the vulnerability gate cannot come to read the same file as two projects."""

import ast
from pathlib import Path

import pytest

import regsync
from regsync.content.python_names import parse_file_name
from regsync.vulns.files import python_package
from regsync.vulns.match import NotCovered



def _importers(name: str) -> list[str]:
    package = Path(regsync.__file__).parent
    return sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                  for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.ImportFrom) and name in {a.name for a in node.names})


def test_a_file_names_project_and_version_are_parsed_in_one_module_only():
    assert _importers("parse_sdist_filename") == ["content/python_names.py"]
    # a wheel's name is parsed elsewhere only where its tags are read (resolution, Nexus's upload form)
    assert _importers("parse_wheel_filename") == ["content/python_names.py", "kinds/package/resolver.py",
                                                  "kinds/package/sinks.py"]


@pytest.mark.parametrize("filename, project, version", [
    ("python-dateutil-2.8.2.tar.gz", "python-dateutil", "2.8.2"),
    ("python_dateutil-2.8.2-py2.py3-none-any.whl", "python-dateutil", "2.8.2"),
    ("Zope.Interface-5.4.0.tar.gz", "zope-interface", "5.4.0"),
    ("zope.interface-5.4.0-cp311-cp311-manylinux_2_17_x86_64.whl", "zope-interface", "5.4.0"),
    ("typing_extensions-4.12.2-1-py3-none-any.whl", "typing-extensions", "4.12.2"),   # a build tag
    ("pyyaml-6.0.1.zip", "pyyaml", "6.0.1"),
])
def test_the_gate_and_the_package_kind_read_a_file_name_alike(filename, project, version):
    name, parsed = parse_file_name(filename)
    assert (name, str(parsed)) == (project, version)
    assert python_package(filename) == ("PyPI", project, version)


@pytest.mark.parametrize("filename", ["numpy-1.26.4-py311h64a7726_0.conda", "app.whl", "README.txt"])
def test_a_name_that_is_no_wheel_or_sdist_is_refused_by_both(filename):
    with pytest.raises(ValueError):
        parse_file_name(filename)
    with pytest.raises(NotCovered):
        python_package(filename)
