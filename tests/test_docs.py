"""The Examples sections of the public docstrings and the README's code run as doctests."""
import doctest
import importlib
import pathlib

import pytest

import fastsoftmax

MODULES = ["fastsoftmax._backends", "fastsoftmax.softmax", "fastsoftmax.cross_entropy",
           "fastsoftmax.sampling", "fastsoftmax.sampled"]
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    # importlib: fastsoftmax.softmax etc. are shadowed by the functions of that name
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0


def test_public_functions_have_examples():
    for name in fastsoftmax.__all__:
        obj = getattr(fastsoftmax, name)
        if isinstance(obj, type) and issubclass(obj, tuple):
            continue  # result records (NamedTuple): documented by their fields
        if callable(obj):
            assert obj.__doc__ and "Examples" in obj.__doc__, f"{name} lacks an Examples section"


@pytest.mark.skipif(not README.exists(), reason="README.md is not shipped in this install")
def test_readme_examples():
    # code fences end the examples (doctest would read them as expected output)
    text = "\n".join("" if line.startswith("```") else line
                      for line in README.read_text().splitlines())
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, "README.md", str(README), 0)
    assert test.examples, "no examples found in README.md"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    threads = fastsoftmax.get_num_threads()
    try:
        with fastsoftmax.use_backend("auto"):
            runner.run(test)
    finally:
        fastsoftmax.set_num_threads(threads)
    assert runner.failures == 0
