"""What a module of mnistc offers: `dir()` lists its public names, and a name it lacks raises an
AttributeError saying what it has instead (Keras has more; tutorial code should learn which part
mnistc supports from the error, not from the source).

A module hooks in with

    from mnistc import _public
    __getattr__, __dir__ = _public.hooks(__name__)

Public names are `__all__` when the module defines it, else the classes and functions defined in
the module itself whose names do not start with "_" (imported helpers and the integer codes sent to
the C core are left out). They are read when asked for, so names added later count.
"""
import difflib
import sys
import types


def public_names(module):
    """The sorted public names of a module (see the module docstring)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and isinstance(v, (type, types.FunctionType))
                 and v.__module__ == module.__name__]
    return sorted(names, key=lambda n: (n.lower(), n))


def _elsewhere(module, name):
    """'mnistc.x.name' for each other public module of mnistc offering name."""
    root = sys.modules.get("mnistc")
    found = []
    for mod_name in getattr(root, "__all__", ()):
        mod = getattr(root, mod_name, None)
        # mnistc.keras is mnistc itself, not a module to point at
        if isinstance(mod, types.ModuleType) and mod not in (module, root) and name in public_names(mod):
            found.append(f"{mod.__name__}.{name}")
    return found


def missing(module, name):
    """The AttributeError for module.name: the module's public names, the closest ones, and the
    other mnistc modules that have the name."""
    head = f"module {module.__name__!r} has no attribute {name!r}"
    if name.startswith("__") and name.endswith("__"):
        return AttributeError(head, name=name)   # protocol probes (copy, pickle, inspect): no listing
    names = public_names(module)
    lines = [head]
    where = _elsewhere(module, name)
    if where:
        lines.append(f"it is {' and '.join(where)}")
    else:
        by_lower = {n.lower(): n for n in names}
        close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.7)]
        if close:
            lines.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
    lines.append(f"{module.__name__} has: {', '.join(names)}")
    return AttributeError("; ".join(lines), name=name)


def hooks(module_name):
    """(__getattr__, __dir__) for the module named module_name, which must be importing now."""
    module = sys.modules[module_name]

    def __getattr__(name):
        raise missing(module, name)

    def __dir__():
        return public_names(module)

    return __getattr__, __dir__
